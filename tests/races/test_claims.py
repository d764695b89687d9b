"""Races on claims, through the reviewer's web endpoints: many Next-case presses at once, a
decision sent at the moment its lease runs out, and a decision form submitted twice."""

from __future__ import annotations

import copy
import random
import re
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from escalation import delivery, transitions
from escalation.audit import Actor
from escalation.models import AuditEvent, Delivery, Escalation, Resolution, Status
from escalation.transitions import TransitionError
from tests.factories import UserFactory, add_member, make_case
from tests.support import at_once

pytestmark = pytest.mark.django_db(transaction=True)

CASE_PATH = re.compile(r"^/cases/([0-9a-f-]{36})/$")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def verbs_of(case_id) -> list[str]:
    return list(
        AuditEvent.objects.filter(escalation_id=case_id)
        .order_by("seq")
        .values_list("verb", flat=True)
    )


def test_100_concurrent_next_case_presses_over_50_cases_make_50_distinct_claims(
    agent, refunds, support, ops
):
    """Race: 100 Next-case POSTs from 10 reviewers at once, 50 open cases.
    Invariant: 50 distinct claims (no case held twice, none left open), the other 50 presses
    land on the inbox, one escalation.claimed event per case, no deadlock or error."""
    reviewers = [UserFactory(username=f"reviewer{n}") for n in range(10)]
    for reviewer in reviewers:
        add_member(reviewer, ops, Role.REVIEWER)
    now = timezone.now()
    for n in range(50):
        make_case(agent=agent, queue=(refunds, support)[n % 2], summary=f"case {n}", now=now)
    sessions = [signed_in(reviewer).cookies for reviewer in reviewers]
    clients = [Client() for _ in range(100)]
    for n, client in enumerate(clients):  # ten presses per reviewer, each its own client
        client.cookies = copy.deepcopy(sessions[n % 10])

    started = time.monotonic()
    responses = at_once([lambda c=c: c.post("/inbox/next/") for c in clients], timeout=90)
    elapsed = time.monotonic() - started

    errors = [r for r in responses if isinstance(r, Exception)]
    assert not errors, errors[:3]
    assert {r.status_code for r in responses} == {302}
    claimed_ids = [m.group(1) for r in responses if (m := CASE_PATH.match(r.url))]
    assert len(claimed_ids) == 50 and len(set(claimed_ids)) == 50
    assert sum(r.url == "/inbox/" for r in responses) == 50
    assert Escalation.objects.filter(status=Status.CLAIMED).count() == 50
    assert AuditEvent.objects.filter(verb="escalation.claimed").count() == 50
    # Each redirect went to the reviewer who now holds that case.
    holders = {
        str(pk): name for pk, name in Escalation.objects.values_list("pk", "claimed_by__username")
    }
    for n, response in enumerate(responses):
        if match := CASE_PATH.match(response.url):
            assert holders[match.group(1)] == reviewers[n % 10].username
    assert elapsed < 60


def test_a_decision_sent_as_the_lease_runs_out_never_resolves_after_it(
    agent, refunds, alice, bob, as_alice
):
    """Race: alice's decision form, the lease sweep and bob's Next case, at the instant
    alice's lease ends (20 rounds, the lease ending 0-40 ms after the start).
    Invariant: a resolution exists only if it was made before the lease end; otherwise alice
    is told her claim ran out and nothing of hers is written; never both a resolution and a
    lease expiry or bob's claim; one audit event per change."""
    alice_client, bob_client = signed_in(alice), signed_in(bob)
    outcomes = {"resolved": 0, "refused": 0}
    for round_number in range(20):
        case = make_case(agent=agent, queue=refunds, summary=f"round {round_number}")
        token = transitions.claim(actor=as_alice, case_id=case.pk).claim_token
        lease_end = timezone.now() + timedelta(milliseconds=random.uniform(0, 40))
        Escalation.objects.filter(pk=case.pk).update(lease_expires_at=lease_end)

        def decide(case=case, token=token):
            return alice_client.post(
                f"/cases/{case.pk}/decide/",
                {"claim_token": str(token), "decision": "approve", "note": "ok"},
            )

        def sweep(case=case):
            time.sleep(random.uniform(0, 0.03))
            return transitions.expire_lease(case_id=case.pk)

        def take_over():
            time.sleep(random.uniform(0, 0.03))
            return bob_client.post("/inbox/next/")

        decided, swept, taken = at_once([decide, sweep, take_over])
        for result in (decided, swept, taken):
            assert not isinstance(result, Exception), result
        assert decided.status_code == 302
        resolution = Resolution.objects.filter(escalation_id=case.pk).first()
        verbs = verbs_of(case.pk)
        fresh = Escalation.objects.get(pk=case.pk)
        if resolution is not None:
            outcomes["resolved"] += 1
            assert resolution.resolved_at < lease_end, (resolution.resolved_at, lease_end)
            assert swept is None and "escalation.lease_expired" not in verbs
            assert verbs.count("escalation.claimed") == 1  # bob never got it
            assert verbs.count("escalation.resolved") == 1
        else:
            outcomes["refused"] += 1
            assert decided.url == f"/cases/{case.pk}/"
            assert "escalation.resolved" not in verbs
            if fresh.status == Status.OPEN:  # returned by the sweep
                assert swept is not None and verbs.count("escalation.lease_expired") == 1
            elif fresh.claimed_by == bob:  # taken over: the claim returned the lease first
                assert verbs.count("escalation.lease_expired") == 1
                assert verbs.count("escalation.claimed") == 2
            else:  # alice's claim, run out, and nobody has looked yet
                assert fresh.claimed_by == alice and fresh.lease_expires_at <= timezone.now()
                assert "escalation.lease_expired" not in verbs
        if fresh.status in (Status.OPEN, Status.CLAIMED):
            # Out of the way, so bob's press in the next round can only take that round's case.
            transitions.cancel(actor=Actor.for_agent(agent), case_id=case.pk)
    assert outcomes["resolved"] + outcomes["refused"] == 20


def test_a_decision_form_submitted_twice_at_once_resolves_once_and_opens_one_next_case(
    hooked_agent_for_races, refunds, alice, as_alice
):
    """Race: the same decision form POSTed twice at the same moment (a double click, two
    tabs), 10 rounds. Invariant: one resolution, one escalation.resolved event, one webhook
    delivery; exactly one of the two answers opens the next case (alice then holds exactly one
    claim), the other is refused back to the decided case."""
    tabs = [signed_in(alice), signed_in(alice)]
    for round_number in range(10):
        case = make_case(agent=hooked_agent_for_races, queue=refunds, summary=f"r{round_number}")
        upcoming = make_case(agent=hooked_agent_for_races, queue=refunds, summary="next one")
        token = transitions.claim(actor=as_alice, case_id=case.pk).claim_token
        form = {"claim_token": str(token), "decision": "reject", "note": "no"}

        url = f"/cases/{case.pk}/decide/"
        answers = at_once([lambda t=t, url=url, form=form: t.post(url, form) for t in tabs])

        assert all(not isinstance(a, Exception) for a in answers), answers
        assert sorted(a.url for a in answers) == sorted(
            [f"/cases/{upcoming.pk}/", f"/cases/{case.pk}/"]
        )
        assert Resolution.objects.filter(escalation_id=case.pk).count() == 1
        assert verbs_of(case.pk).count("escalation.resolved") == 1
        assert Delivery.objects.filter(escalation_id=case.pk).count() == 1
        held = Escalation.objects.filter(status=Status.CLAIMED, claimed_by=alice)
        assert list(held.values_list("pk", flat=True)) == [upcoming.pk]
        assert verbs_of(upcoming.pk).count("escalation.claimed") == 1
        transitions.cancel(actor=Actor.for_agent(hooked_agent_for_races), case_id=upcoming.pk)
    with pytest.raises(TransitionError):
        transitions.resolve(actor=as_alice, case_id=case.pk, claim_token=token, decision="approve")


@pytest.fixture
def hooked_agent_for_races(agent, monkeypatch):
    """refund-bot with a callback URL: resolutions write a Delivery row, and nothing is sent
    (the doorbell rings no worker)."""
    monkeypatch.setattr(delivery, "ring", lambda delivery_id: False)
    agent.callback_url = "https://hooks.example.com/handoff"
    agent.save(update_fields=["callback_url"])
    return agent
