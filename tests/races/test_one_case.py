"""Every move on one claimed case at once: the holder resolves, a manager cancels, the sweep
returns the lease, a manager transfers it, while the lease runs out around the same instant.

What must hold is that the successes form one legal history, replayed in audit order: a
terminal move ends it (nothing succeeds after it), a lease expiry or a transfer leaves the case
open (so the holder's resolve can no longer succeed), and every success wrote exactly one audit
event and every failure none.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import delivery, transitions
from escalation.models import AuditEvent, Delivery, Escalation, Resolution, Status
from escalation.transitions import TransitionError
from tests.factories import make_case
from tests.support import at_once

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 20
VERB = {
    "resolve": "escalation.resolved",
    "cancel": "escalation.cancelled",
    "lease_expiry": "escalation.lease_expired",
    "transfer": "escalation.transferred",
}
MOVES = {"escalation.lease_expired", "escalation.transferred"} | {
    "escalation.resolved",
    "escalation.cancelled",
}


def replay(verbs: list[str]) -> str:
    """The status the legal history `verbs` (after the claim) ends in; fails on an illegal one."""
    status = Status.CLAIMED
    for verb in verbs:
        assert status in (Status.OPEN, Status.CLAIMED), f"{verb} after a terminal move: {verbs}"
        if verb in ("escalation.resolved", "escalation.lease_expired"):
            assert status == Status.CLAIMED, f"{verb} on an open case: {verbs}"
        status = {
            "escalation.resolved": Status.RESOLVED,
            "escalation.cancelled": Status.CANCELLED,
            "escalation.lease_expired": Status.OPEN,
            "escalation.transferred": Status.OPEN,
        }[verb]
    return status


def test_resolve_cancel_lease_expiry_and_transfer_at_once_make_one_legal_history(
    monkeypatch, agent, refunds, support, as_alice, as_mona
):
    """Race: resolve (holder) vs cancel (manager) vs lease expiry (sweep) vs transfer
    (manager) on one claimed case, 20 rounds, the lease ending 0-30 ms after the start.
    Invariant: exactly one terminal outcome; the successes replay as a legal history in audit
    order; one audit event per success, none per failure; one webhook delivery for that
    outcome; a resolution only if the resolve came first and inside the lease."""
    monkeypatch.setattr(delivery, "ring", lambda delivery_id: False)  # rows only, no sending
    agent.callback_url = "https://hooks.example.com/handoff"
    agent.save(update_fields=["callback_url"])
    seen_first: set[str] = set()
    for round_number in range(ROUNDS):
        case = make_case(agent=agent, queue=refunds, summary=f"round {round_number}")
        token = transitions.claim(actor=as_alice, case_id=case.pk).claim_token
        lease_end = timezone.now() + timedelta(milliseconds=random.uniform(0, 30))
        Escalation.objects.filter(pk=case.pk).update(lease_expires_at=lease_end)
        calls = {
            "resolve": lambda c=case, t=token: transitions.resolve(
                actor=as_alice, case_id=c.pk, claim_token=t, decision="approve"
            ),
            "cancel": lambda c=case: transitions.cancel(
                actor=as_mona, case_id=c.pk, reason="duplicate"
            ),
            "lease_expiry": lambda c=case: transitions.expire_lease(case_id=c.pk),
            "transfer": lambda c=case: transitions.transfer(
                actor=as_mona, case_id=c.pk, to_queue=support, reason="wrong queue"
            ),
        }
        results = dict(zip(calls, at_once(list(calls.values())), strict=True))

        for name, result in results.items():
            # A refusal is the domain's error; anything else (a deadlock, an integrity error)
            # is a bug. A lease expiry with nothing to do answers None.
            assert (
                result is None
                or not isinstance(result, Exception)
                or isinstance(result, TransitionError)
            ), (name, result)
        succeeded = {
            name
            for name, result in results.items()
            if result is not None and not isinstance(result, Exception)
        }
        verbs = [
            verb
            for verb in AuditEvent.objects.filter(escalation_id=case.pk)
            .order_by("seq")
            .values_list("verb", flat=True)
            if verb in MOVES
        ]
        assert sorted(verbs) == sorted(VERB[name] for name in succeeded), (results, verbs)
        final = replay(verbs)
        fresh = Escalation.objects.get(pk=case.pk)
        assert fresh.status == final
        terminal = [v for v in verbs if v in ("escalation.resolved", "escalation.cancelled")]
        assert len(terminal) == 1, (results, verbs)
        assert Delivery.objects.filter(escalation_id=case.pk).count() == 1
        resolution = Resolution.objects.filter(escalation_id=case.pk).first()
        if final == Status.RESOLVED:
            assert verbs == ["escalation.resolved"] and resolution.resolved_at < lease_end
        else:
            assert resolution is None
        if "escalation.transferred" in verbs:
            assert fresh.queue_id == support.pk
        seen_first.add(verbs[0])
    # The rounds did race: more than one move got there first.
    assert len(seen_first) >= 2, seen_first
