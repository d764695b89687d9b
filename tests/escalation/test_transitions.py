"""The case state machine: every legal move, every illegal one (refused, nothing written)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import audit, outbox, transitions
from escalation.audit import Actor
from escalation.models import (
    AuditEvent,
    ContextUpdate,
    Escalation,
    OutboxItem,
    Resolution,
    Status,
    Transfer,
)
from escalation.transitions import TransitionError
from tests.factories import make_case

pytestmark = pytest.mark.django_db


def verbs(case) -> list[str]:
    return list(AuditEvent.objects.filter(escalation=case).values_list("verb", flat=True))


@pytest.fixture
def claimed(case, as_alice):
    return transitions.claim(actor=as_alice, case_id=case.pk)


def assert_refused(code: str, fn, **kwargs):
    """The move raises TransitionError(code) and writes nothing: no audit row, same case row."""
    from escalation.models import Escalation

    case_id = kwargs.get("case_id")
    before = Escalation.objects.filter(pk=case_id).values().first() if case_id else None
    events = AuditEvent.objects.count()
    with pytest.raises(TransitionError) as err:
        fn(**kwargs)
    assert err.value.code == code, err.value.message
    assert AuditEvent.objects.count() == events
    if case_id:
        assert Escalation.objects.filter(pk=case_id).values().first() == before
    return err.value


# --- create ----------------------------------------------------------------------------------


def test_create_opens_a_case_with_due_times_an_audit_event_and_a_routing_job(agent, refunds):
    case = make_case(agent=agent, queue=refunds, priority="high")
    assert case.status == Status.OPEN
    assert case.claim_due_at - case.created_at == timedelta(minutes=15)
    assert case.resolve_due_at - case.created_at == timedelta(hours=2)
    assert case.next_due_at == case.claim_due_at
    assert case.claim_risk_at - case.created_at == timedelta(minutes=15) * 0.75
    assert case.expires_at - case.created_at == timedelta(days=7)
    assert verbs(case) == ["escalation.created"]
    event = AuditEvent.objects.get(escalation=case)
    assert event.actor_kind == "agent" and event.actor_name == "refund-bot"
    assert "context" not in event.data and event.data["context_sha256"]
    assert OutboxItem.objects.filter(escalation=case, kind="route").count() == 1


def test_create_is_refused_for_a_queue_the_agent_may_not_post_to(agent, refunds, support):
    agent.all_queues = False
    agent.save()
    agent.queues.set([support])
    assert_refused("forbidden", make_case, agent=agent, queue=refunds)
    assert not OutboxItem.objects.exists()


def test_create_is_refused_past_the_agents_open_case_cap(agent, refunds):
    agent.max_open_cases = 1
    agent.save()
    make_case(agent=agent, queue=refunds)
    err = assert_refused("open_case_cap", make_case, agent=agent, queue=refunds)
    assert "limit 1" in err.message


def _count_queries(fn, **kwargs) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        fn(**kwargs)
    return sum("COUNT(*)" in q["sql"] for q in captured.captured_queries)


def test_the_open_case_cap_counts_only_when_the_share_taken_has_no_room(
    agent, refunds, monkeypatch
):
    from escalation import cap
    from escalation.models import CapShare

    agent.max_open_cases = 2 * cap.CAP_SHARES  # room for 2 in each share
    agent.save()
    share = {"n": 0}
    monkeypatch.setattr(cap, "pick_share", lambda: share["n"])

    def bounds() -> list[int]:
        return list(
            CapShare.objects.filter(agent=agent).order_by("share").values_list("bound", flat=True)
        )

    # No shares yet (an agent from before they existed): the first create counts.
    assert _count_queries(make_case, agent=agent, queue=refunds) == 1
    assert bounds() == [1] + [0] * (cap.CAP_SHARES - 1)
    # Room in the share: no count, however many open cases the agent has.
    assert _count_queries(make_case, agent=agent, queue=refunds) == 0
    # Share 0 is full: count, and spread the 3 over the shares.
    assert _count_queries(make_case, agent=agent, queue=refunds) == 1
    assert bounds() == [1, 1, 1] + [0] * (cap.CAP_SHARES - 3)
    for n in range(cap.CAP_SHARES):
        share["n"] = n
        while CapShare.objects.get(agent=agent, share=n).bound < 2:
            last = make_case(agent=agent, queue=refunds)
    assert Escalation.objects.filter(agent=agent).count() == agent.max_open_cases
    err = assert_refused("open_case_cap", make_case, agent=agent, queue=refunds)
    assert f"already has {agent.max_open_cases} open cases" in err.message
    # A close leaves the bounds as they are; the next create counts and is let in.
    transitions.cancel(actor=Actor.for_agent(agent), case_id=last.pk)
    assert _count_queries(make_case, agent=agent, queue=refunds) == 1
    assert sum(bounds()) == agent.max_open_cases


def test_create_refuses_an_unknown_priority(agent, refunds):
    err = assert_refused("invalid", make_case, agent=agent, queue=refunds, priority="asap")
    assert "priority" in err.fields


# --- routing ---------------------------------------------------------------------------------


def test_routing_raises_priority_and_recomputes_due_times_from_arrival(agent, refunds):
    refunds.routing_rules = [
        {
            "when": {"field": "metadata.tier", "op": "eq", "value": "gold"},
            "then": {"priority": "urgent"},
        }
    ]
    refunds.save()
    case = make_case(agent=agent, queue=refunds, metadata={"tier": "gold"})
    routed = transitions.route(case_id=case.pk)
    assert routed.priority == "urgent" and routed.priority_rank == 0
    assert routed.claim_due_at - routed.created_at == timedelta(minutes=5)
    assert routed.next_due_at == routed.claim_due_at
    event = AuditEvent.objects.get(escalation=case, verb="escalation.routed")
    assert event.data["rules_matched"] == [0] and event.data["changes"] == {"priority": "urgent"}
    assert OutboxItem.objects.filter(escalation=case, kind="notify_urgent").exists()


def test_routing_to_another_queue_moves_the_case_there(agent, refunds, compliance):
    refunds.routing_rules = [
        {
            "when": {"field": "reason", "op": "eq", "value": "policy"},
            "then": {"queue": "compliance"},
        }
    ]
    refunds.save()
    case = make_case(agent=agent, queue=refunds, reason="policy")
    routed = transitions.route(case_id=case.pk)
    assert routed.queue == compliance and routed.status == Status.OPEN
    assert Transfer.objects.get(escalation=case).from_queue == refunds


def test_routing_twice_changes_nothing_the_second_time(case):
    first = transitions.route(case_id=case.pk)
    second = transitions.route(case_id=case.pk)
    assert second.routed_at == first.routed_at
    assert verbs(case).count("escalation.routed") == 1


def test_routing_to_an_unknown_queue_is_recorded_and_ignored(agent, refunds):
    refunds.routing_rules = [
        {"when": {"field": "confidence", "op": "lt", "value": 0.5}, "then": {"queue": "nowhere"}}
    ]
    refunds.save()
    case = make_case(agent=agent, queue=refunds, confidence=0.2)
    routed = transitions.route(case_id=case.pk)
    assert routed.queue == refunds
    event = AuditEvent.objects.get(escalation=case, verb="escalation.routed")
    assert "nowhere" in event.data["ignored"]


def test_urgent_routing_emails_the_queue_team(
    agent, refunds, alice, bob, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        case = make_case(agent=agent, queue=refunds, priority="urgent")
    # route ran after commit (eager outbox), and queued the e-mail, which also ran.
    case.refresh_from_db()
    assert case.routed_at is not None
    assert len(mailoutbox) == 1
    assert sorted(mailoutbox[0].to) == ["alice@example.com", "bob@example.com"]
    assert str(case.pk) in mailoutbox[0].body
    assert not OutboxItem.objects.filter(done_at__isnull=True).exists()


# --- claim -----------------------------------------------------------------------------------


def test_claim_gives_a_lease_and_a_claim_token(case, as_alice, alice):
    now = timezone.now()
    claimed = transitions.claim(actor=as_alice, case_id=case.pk, now=now)
    assert claimed.status == Status.CLAIMED and claimed.claimed_by == alice
    assert claimed.claim_token is not None
    assert claimed.lease_expires_at == now + timedelta(minutes=15)
    assert claimed.next_due_at == claimed.resolve_due_at
    assert verbs(case)[-1] == "escalation.claimed"


def test_a_claimed_case_cannot_be_claimed_by_another_reviewer(claimed, as_bob):
    err = assert_refused("illegal_transition", transitions.claim, actor=as_bob, case_id=claimed.pk)
    assert "alice" in err.message


def test_an_outsider_cannot_claim(case, outsider):
    assert_refused("forbidden", transitions.claim, actor=Actor.for_user(outsider), case_id=case.pk)


def test_a_reviewer_of_another_team_cannot_claim(agent, compliance, as_alice):
    case = make_case(agent=agent, queue=compliance)
    assert_refused("forbidden", transitions.claim, actor=as_alice, case_id=case.pk)


def test_claiming_an_unknown_case_is_not_found(as_alice):
    assert_refused(
        "not_found",
        transitions.claim,
        actor=as_alice,
        case_id="00000000-0000-0000-0000-000000000000",
    )


def test_a_case_whose_lease_ran_out_can_be_claimed_by_someone_else(claimed, as_bob, bob):
    later = claimed.lease_expires_at + timedelta(seconds=1)
    taken = transitions.claim(actor=as_bob, case_id=claimed.pk, now=later)
    assert taken.claimed_by == bob
    assert verbs(claimed)[-2:] == ["escalation.lease_expired", "escalation.claimed"]


def test_agents_cannot_claim(case, as_agent):
    assert_refused("forbidden", transitions.claim, actor=as_agent, case_id=case.pk)


# --- claim next ------------------------------------------------------------------------------


def test_claim_next_takes_the_case_due_first_so_breached_ones_lead(agent, refunds, as_alice):
    now = timezone.now()
    due_in_5m = make_case(agent=agent, queue=refunds, priority="urgent", now=now)
    at_risk_due_in_30m = make_case(
        agent=agent, queue=refunds, priority="low", now=now - timedelta(hours=3, minutes=30)
    )
    breached = make_case(agent=agent, queue=refunds, priority="low", now=now - timedelta(hours=5))
    order = [transitions.claim_next(actor=as_alice, now=now).pk for _ in range(3)]
    assert order == [breached.pk, due_in_5m.pk, at_risk_due_in_30m.pk]
    assert transitions.claim_next(actor=as_alice, now=now) is None


def test_claim_next_breaks_due_time_ties_by_priority(agent, refunds, as_alice):
    now = timezone.now()
    refunds.sla_policy = {
        p: {"claim": 600, "resolve": 3600} for p in ("urgent", "high", "normal", "low")
    }
    refunds.save()
    low = make_case(agent=agent, queue=refunds, priority="low", now=now)
    high = make_case(agent=agent, queue=refunds, priority="high", now=now)
    assert transitions.claim_next(actor=as_alice, now=now).pk == high.pk
    assert transitions.claim_next(actor=as_alice, now=now).pk == low.pk


def test_claim_next_takes_the_first_of_queries_claimable_cases_in_each_state(
    agent, refunds, as_alice, as_bob
):
    # Next case locks in plain SQL; queries.claimable_cases is the same rule as a queryset.
    from escalation import queries

    now = timezone.now()
    cases = [make_case(agent=agent, queue=refunds, now=now - timedelta(hours=h)) for h in range(5)]
    lapsed, held, done, _, _ = cases
    transitions.claim(actor=as_bob, case_id=lapsed.pk, now=now - timedelta(hours=2))
    transitions.claim(actor=as_bob, case_id=held.pk, now=now)
    claimed = transitions.claim(actor=as_bob, case_id=done.pk, now=now)
    transitions.resolve(
        actor=as_bob, case_id=done.pk, claim_token=claimed.claim_token, decision="reject"
    )
    expected = list(queries.claimable_cases([refunds.pk], now).values_list("pk", flat=True))
    assert lapsed.pk in expected and held.pk not in expected and done.pk not in expected
    taken = [transitions.claim_next(actor=as_alice, now=now).pk for _ in expected]
    assert taken == expected
    assert transitions.claim_next(actor=as_alice, now=now) is None


def test_claim_next_only_looks_in_the_reviewers_queues(agent, compliance, as_alice):
    make_case(agent=agent, queue=compliance)
    assert transitions.claim_next(actor=as_alice) is None


def test_claim_next_can_be_limited_to_some_queues(agent, refunds, support, as_alice):
    in_support = make_case(agent=agent, queue=support)
    make_case(agent=agent, queue=refunds, priority="urgent")
    got = transitions.claim_next(actor=as_alice, queue_ids=[support.pk])
    assert got.pk == in_support.pk


def test_claim_next_goes_in_urgency_order_across_queues_past_another_teams_backlog(
    agent, refunds, support, compliance, as_alice, monkeypatch
):
    from escalation import queries

    monkeypatch.setattr(queries, "NEXT_CANDIDATES", 2)  # fewer than a queue holds
    now = timezone.now()
    for hours in range(5, 10):  # all due long before alice's cases, none hers to take
        make_case(agent=agent, queue=compliance, now=now - timedelta(hours=hours))
    mine = [
        make_case(agent=agent, queue=queue, now=now - timedelta(minutes=minutes))
        for queue, minutes in [
            (refunds, 50), (support, 40), (refunds, 30), (refunds, 20), (support, 10), (support, 1)
        ]
    ]  # fmt: skip
    order = [transitions.claim_next(actor=as_alice, now=now).pk for _ in mine]
    assert order == [case.pk for case in mine]  # the oldest is due first
    assert transitions.claim_next(actor=as_alice, now=now) is None


def test_claim_next_looks_at_every_claimable_case_when_its_candidates_are_gone(
    agent, refunds, support, as_alice, monkeypatch
):
    import uuid

    from escalation import queries

    waiting = make_case(agent=agent, queue=support)
    # Candidates read a moment ago, all claimed (or gone) by the time of the lock.
    monkeypatch.setattr(queries, "next_case_candidates", lambda queue_ids, now: [uuid.uuid4()])
    assert transitions.claim_next(actor=as_alice).pk == waiting.pk


# --- lease -----------------------------------------------------------------------------------


def test_renewing_extends_a_live_lease(claimed, as_alice):
    later = claimed.lease_expires_at - timedelta(minutes=1)
    renewed = transitions.renew_lease(
        actor=as_alice, case_id=claimed.pk, claim_token=claimed.claim_token, now=later
    )
    assert renewed.lease_expires_at == later + timedelta(minutes=15)


def test_a_heartbeat_cannot_revive_an_expired_lease(claimed, as_alice):
    assert_refused(
        "lease_expired",
        transitions.renew_lease,
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        now=claimed.lease_expires_at,
    )


def test_lease_expiry_returns_the_case_to_open(claimed):
    assert (
        transitions.expire_lease(
            case_id=claimed.pk, now=claimed.lease_expires_at - timedelta(seconds=1)
        )
        is None
    )
    reopened = transitions.expire_lease(case_id=claimed.pk, now=claimed.lease_expires_at)
    assert reopened.status == Status.OPEN and reopened.claimed_by is None
    assert reopened.next_due_at == reopened.claim_due_at
    assert verbs(claimed)[-1] == "escalation.lease_expired"
    assert transitions.expire_lease(case_id=claimed.pk, now=claimed.lease_expires_at) is None


# --- release ---------------------------------------------------------------------------------


def test_the_holder_releases_and_the_due_times_stay(claimed, as_alice):
    released = transitions.release(
        actor=as_alice, case_id=claimed.pk, claim_token=claimed.claim_token
    )
    assert released.status == Status.OPEN and released.claim_token is None
    assert released.claim_due_at == claimed.claim_due_at
    assert verbs(claimed)[-1] == "escalation.released"


def test_a_manager_releases_anyones_claim_without_the_token(claimed, as_mona):
    released = transitions.release(actor=as_mona, case_id=claimed.pk)
    assert released.status == Status.OPEN
    assert AuditEvent.objects.filter(escalation=claimed).last().data["by_manager"] is True


def test_another_reviewer_cannot_release(claimed, as_bob):
    assert_refused("not_claim_holder", transitions.release, actor=as_bob, case_id=claimed.pk)


def test_a_holder_whose_lease_ran_out_cannot_release(claimed, as_alice):
    assert_refused(
        "lease_expired",
        transitions.release,
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        now=claimed.lease_expires_at,
    )


def test_an_open_case_cannot_be_released(case, as_alice):
    assert_refused("not_claim_holder", transitions.release, actor=as_alice, case_id=case.pk)


# --- resolve ---------------------------------------------------------------------------------


def test_approve_resolves_with_the_proposed_action(claimed, as_alice, alice):
    done = transitions.resolve(
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="approve",
        note="within policy",
    )
    assert done.status == Status.RESOLVED and done.next_due_at is None
    resolution = Resolution.objects.get(escalation=claimed)
    assert resolution.final_action == claimed.proposed_action
    assert resolution.resolved_by == alice and resolution.note == "within policy"
    assert verbs(claimed)[-1] == "escalation.resolved"


def test_modify_needs_a_final_action(claimed, as_alice):
    err = assert_refused(
        "invalid",
        transitions.resolve,
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="modify",
    )
    assert "final_action" in err.fields
    done = transitions.resolve(
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="modify",
        final_action={"type": "refund", "amount": 500},
    )
    assert done.resolution.final_action == {"type": "refund", "amount": 500}


def test_reject_keeps_no_final_action(claimed, as_alice):
    transitions.resolve(
        actor=as_alice, case_id=claimed.pk, claim_token=claimed.claim_token, decision="reject"
    )
    assert Resolution.objects.get(escalation=claimed).final_action is None


def test_labels_are_validated_against_the_queue_schema(claimed, as_alice, refunds):
    refunds.label_schema = {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": ["fraud", "goodwill"]}},
        "required": ["category"],
    }
    refunds.save()
    err = assert_refused(
        "invalid",
        transitions.resolve,
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="approve",
        labels={"category": "other"},
    )
    assert "category" in err.fields["labels"]
    assert not Resolution.objects.exists()
    transitions.resolve(
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="approve",
        labels={"category": "fraud"},
    )
    assert Resolution.objects.get().labels == {"category": "fraud"}


def test_an_unknown_decision_is_invalid(claimed, as_alice):
    assert_refused(
        "invalid",
        transitions.resolve,
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="maybe",
    )


def test_the_claim_fence_refuses_a_resolve_after_the_lease_even_before_any_sweep(claimed, as_alice):
    # Nothing has returned the case to open: its row still says claimed by alice.
    err = assert_refused(
        "lease_expired",
        transitions.resolve,
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="approve",
        now=claimed.lease_expires_at + timedelta(seconds=1),
    )
    assert "claim the case again" in err.message


def test_a_stale_claim_token_cannot_resolve_after_a_reclaim(claimed, as_alice):
    later = claimed.lease_expires_at + timedelta(seconds=1)
    reclaimed = transitions.claim(actor=as_alice, case_id=claimed.pk, now=later)
    assert_refused(
        "not_claim_holder",
        transitions.resolve,
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="approve",
        now=later,
    )
    transitions.resolve(
        actor=as_alice,
        case_id=claimed.pk,
        claim_token=reclaimed.claim_token,
        decision="approve",
        now=later,
    )


def test_only_the_holder_resolves(claimed, as_bob, as_mona):
    assert_refused(
        "not_claim_holder",
        transitions.resolve,
        actor=as_bob,
        case_id=claimed.pk,
        claim_token=claimed.claim_token,
        decision="approve",
    )
    assert_refused(
        "not_claim_holder",
        transitions.resolve,
        actor=as_mona,
        case_id=claimed.pk,
        claim_token=None,
        decision="approve",
    )


def test_an_open_case_cannot_be_resolved(case, as_alice):
    assert_refused(
        "not_claim_holder",
        transitions.resolve,
        actor=as_alice,
        case_id=case.pk,
        claim_token=None,
        decision="approve",
    )


# --- terminal states refuse everything -------------------------------------------------------


@pytest.fixture
def resolved(claimed, as_alice):
    return transitions.resolve(
        actor=as_alice, case_id=claimed.pk, claim_token=claimed.claim_token, decision="approve"
    )


@pytest.mark.parametrize(
    "move", ["claim", "resolve", "release", "transfer", "cancel", "append_context"]
)
def test_a_resolved_case_refuses_every_further_move(resolved, move, as_alice, as_agent, support):
    calls = {
        "claim": (transitions.claim, {"actor": as_alice}),
        "resolve": (
            transitions.resolve,
            {"actor": as_alice, "claim_token": None, "decision": "approve"},
        ),
        "release": (transitions.release, {"actor": as_alice}),
        "transfer": (transitions.transfer, {"actor": as_alice, "to_queue": support}),
        "cancel": (transitions.cancel, {"actor": as_agent, "reason": "dup"}),
        "append_context": (transitions.append_context, {"actor": as_agent, "note": "x"}),
    }
    fn, kwargs = calls[move]
    err = assert_refused("illegal_transition", fn, case_id=resolved.pk, **kwargs)
    assert "resolved" in err.message


def test_expiry_and_lease_expiry_leave_terminal_cases_alone(resolved):
    far = timezone.now() + timedelta(days=30)
    assert transitions.expire(case_id=resolved.pk, now=far) is None
    assert transitions.expire_lease(case_id=resolved.pk, now=far) is None


# --- transfer --------------------------------------------------------------------------------


def test_transfer_drops_the_claim_and_restarts_the_clock_in_the_new_queue(
    claimed, as_alice, support
):
    support.sla_policy = {"normal": {"claim": 120, "resolve": 600}}
    support.save()
    from escalation.models import Escalation

    Escalation.objects.filter(pk=claimed.pk).update(claim_breached_at=claimed.created_at)
    now = timezone.now()
    moved = transitions.transfer(
        actor=as_alice,
        case_id=claimed.pk,
        to_queue=support,
        claim_token=claimed.claim_token,
        reason="wrong team",
        now=now,
    )
    assert moved.queue == support and moved.status == Status.OPEN and moved.claimed_by is None
    assert moved.claim_due_at == now + timedelta(minutes=2)
    assert moved.claim_breached_at == claimed.created_at  # breach history stays
    assert moved.expires_at == claimed.expires_at  # expiry stays
    assert Transfer.objects.get(escalation=claimed).reason == "wrong team"
    assert verbs(claimed)[-1] == "escalation.transferred"


def test_an_open_case_can_be_transferred_without_a_claim(case, as_bob, compliance):
    moved = transitions.transfer(actor=as_bob, case_id=case.pk, to_queue=compliance)
    assert moved.queue == compliance


def test_a_claimed_case_cannot_be_transferred_by_someone_else(claimed, as_bob, support):
    assert_refused(
        "not_claim_holder", transitions.transfer, actor=as_bob, case_id=claimed.pk, to_queue=support
    )


def test_a_manager_can_transfer_a_claimed_case(claimed, as_mona, support):
    assert (
        transitions.transfer(actor=as_mona, case_id=claimed.pk, to_queue=support).queue == support
    )


def test_transfer_to_the_same_queue_is_invalid(case, as_alice, refunds):
    assert_refused(
        "invalid", transitions.transfer, actor=as_alice, case_id=case.pk, to_queue=refunds
    )


# --- cancel ----------------------------------------------------------------------------------


def test_the_agent_cancels_its_own_case(case, as_agent):
    done = transitions.cancel(actor=as_agent, case_id=case.pk, reason="customer withdrew")
    assert done.status == Status.CANCELLED and done.cancelled_by_agent
    assert verbs(case)[-1] == "escalation.cancelled"


def test_another_agent_cannot_see_the_case_to_cancel_it(case, other_agent):
    assert_refused(
        "not_found",
        transitions.cancel,
        actor=Actor.for_agent(other_agent),
        case_id=case.pk,
        reason="x",
    )


def test_a_manager_cancels_with_a_reason(claimed, as_mona):
    assert_refused("invalid", transitions.cancel, actor=as_mona, case_id=claimed.pk, reason=" ")
    done = transitions.cancel(actor=as_mona, case_id=claimed.pk, reason="duplicate")
    assert done.status == Status.CANCELLED and not done.cancelled_by_agent


def test_a_reviewer_cannot_cancel(case, as_alice):
    assert_refused("forbidden", transitions.cancel, actor=as_alice, case_id=case.pk, reason="spam")


# --- expire ----------------------------------------------------------------------------------


def test_a_case_expires_at_its_horizon_and_not_before(claimed):
    assert (
        transitions.expire(case_id=claimed.pk, now=claimed.expires_at - timedelta(seconds=1))
        is None
    )
    done = transitions.expire(case_id=claimed.pk, now=claimed.expires_at)
    assert done.status == Status.EXPIRED and done.claim_token is None
    assert verbs(claimed)[-1] == "escalation.expired"


# --- context and redaction -------------------------------------------------------------------


def test_the_agent_appends_context_to_an_open_case(case, as_agent):
    update = transitions.append_context(
        actor=as_agent, case_id=case.pk, note="customer called", data={"call": {"minutes": 4}}
    )
    assert ContextUpdate.objects.get(escalation=case) == update
    event = AuditEvent.objects.filter(escalation=case).last()
    assert event.verb == "escalation.context_added" and "data" not in event.data


def test_another_agent_cannot_append_context(case, other_agent):
    assert_refused(
        "not_found",
        transitions.append_context,
        actor=Actor.for_agent(other_agent),
        case_id=case.pk,
        note="x",
    )


def test_redaction_replaces_personal_data_and_keeps_the_chain_valid(case, as_agent):
    transitions.append_context(
        actor=as_agent, case_id=case.pk, note="phone +44 1234", data={"email": "a@b.c"}
    )
    done = transitions.redact(actor=Actor.system(), case_id=case.pk, reason="GDPR erasure")
    assert done.context["redacted"] is True and done.metadata["redacted"] is True
    update = ContextUpdate.objects.get(escalation=case)
    assert update.note == "" and update.data["redacted"] is True
    assert verbs(case)[-1] == "escalation.redacted"
    assert audit.verify_chain().ok


def test_redaction_needs_a_reason(case):
    assert_refused("invalid", transitions.redact, actor=Actor.system(), case_id=case.pk, reason="")


# --- outbox ----------------------------------------------------------------------------------


def test_an_outbox_item_runs_once_even_when_delivered_twice(case):
    item = OutboxItem.objects.get(escalation=case, kind="route")
    assert outbox.perform(item.pk) == "done"
    assert outbox.perform(item.pk) == "skipped"
    assert verbs(case).count("escalation.routed") == 1


def test_an_outbox_item_held_by_a_live_worker_is_not_run_again(case):
    item = OutboxItem.objects.get(escalation=case, kind="route")
    OutboxItem.objects.filter(pk=item.pk).update(locked_until=timezone.now() + timedelta(minutes=1))
    assert outbox.perform(item.pk) == "skipped"
    OutboxItem.objects.filter(pk=item.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )  # its worker died
    assert outbox.perform(item.pk) == "done"


def test_idempotency_records_are_forgotten_after_24_hours(agent):
    from escalation import sweeps
    from escalation.models import IdempotencyRecord

    now = timezone.now()
    old = IdempotencyRecord.objects.create(
        agent=agent,
        key="old",
        request_hash="x",
        status_code=201,
        response_body={},
        created_at=now - timedelta(hours=24, seconds=1),
    )
    fresh = IdempotencyRecord.objects.create(
        agent=agent,
        key="fresh",
        request_hash="x",
        status_code=201,
        response_body={},
        created_at=now - timedelta(hours=23),
    )
    assert sweeps.forget_idempotency_keys(now=now) == 1
    assert not IdempotencyRecord.objects.filter(pk=old.pk).exists()
    assert IdempotencyRecord.objects.filter(pk=fresh.pk).exists()
