"""The clocks: breach detection, lease and case expiry, breach digests and checkpoints, with
time moved by time-machine."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from escalation import audit, sweeps, transitions
from escalation.audit import Actor
from escalation.models import AuditEvent, BusinessCalendar, Escalation, Status
from tests.factories import UserFactory, add_member, make_case

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def events(case, verb: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(escalation=case, verb=verb))


@pytest.fixture
def tight(refunds):
    """Normal cases: claim within 10 minutes, resolve within an hour."""
    refunds.sla_policy = {"normal": {"claim": 600, "resolve": 3600}}
    refunds.save()
    return refunds


@pytest.fixture
def fresh(agent, tight):
    return make_case(agent=agent, queue=tight, now=T0)


# --- at risk and breached ---------------------------------------------------------------------


def test_a_case_is_at_risk_at_75_percent_of_its_target_and_breached_after_it(fresh):
    assert fresh.sla_state(T0 + timedelta(minutes=7, seconds=29)) == "ok"
    assert fresh.sla_state(T0 + timedelta(minutes=7, seconds=30)) == "at_risk"
    assert fresh.sla_state(T0 + timedelta(minutes=10)) == "breached"


def test_a_breach_is_recorded_once_after_the_target_passes(fresh):
    assert sweeps.sweep_breaches(now=T0 + timedelta(minutes=9, seconds=59)) == 0
    with time_machine.travel(T0 + timedelta(minutes=10, seconds=5), tick=False):
        assert sweeps.sweep_breaches() == 1
        assert sweeps.sweep_breaches() == 0
    fresh.refresh_from_db()
    assert fresh.claim_breached_at == T0 + timedelta(minutes=10, seconds=5)
    [event] = events(fresh, "sla.claim_breached")
    assert event.actor_kind == "system" and event.data["due_at"] == fresh.claim_due_at.isoformat()


def test_an_open_case_past_its_resolve_target_breaches_both(fresh):
    assert sweeps.sweep_breaches(now=T0 + timedelta(hours=2)) == 2
    assert len(events(fresh, "sla.claim_breached")) == 1
    assert len(events(fresh, "sla.resolve_breached")) == 1


def test_a_claimed_case_breaches_its_resolve_target(fresh, as_alice):
    claimed = transitions.claim(actor=as_alice, case_id=fresh.pk, now=T0 + timedelta(minutes=1))
    transitions.renew_lease(
        actor=as_alice,
        case_id=fresh.pk,
        claim_token=claimed.claim_token,
        now=T0 + timedelta(minutes=14),
    )
    # Its lease keeps being renewed; the resolve target passes at T0 + 1 h.
    Escalation.objects.filter(pk=fresh.pk).update(lease_expires_at=T0 + timedelta(hours=2))
    assert sweeps.sweep_breaches(now=T0 + timedelta(minutes=59)) == 0
    assert sweeps.sweep_breaches(now=T0 + timedelta(minutes=61)) == 1
    fresh.refresh_from_db()
    assert fresh.resolve_breached_at is not None and fresh.claim_breached_at is None


def test_a_late_claim_records_the_breach_even_before_a_sweep(fresh, as_alice):
    transitions.claim(actor=as_alice, case_id=fresh.pk, now=T0 + timedelta(minutes=12))
    verbs = list(AuditEvent.objects.filter(escalation=fresh).values_list("verb", flat=True))
    assert verbs[-2:] == ["sla.claim_breached", "escalation.claimed"]
    assert sweeps.sweep_breaches(now=T0 + timedelta(minutes=13)) == 0


def test_a_late_resolution_records_the_resolve_breach(fresh, as_alice):
    claimed = transitions.claim(actor=as_alice, case_id=fresh.pk, now=T0 + timedelta(minutes=5))
    Escalation.objects.filter(pk=fresh.pk).update(lease_expires_at=T0 + timedelta(hours=3))
    transitions.resolve(
        actor=as_alice,
        case_id=fresh.pk,
        claim_token=claimed.claim_token,
        decision="approve",
        now=T0 + timedelta(hours=2),
    )
    assert len(events(fresh, "sla.resolve_breached")) == 1


def test_terminal_cases_never_breach(fresh, as_agent):
    transitions.cancel(
        actor=as_agent, case_id=fresh.pk, reason="withdrawn", now=T0 + timedelta(minutes=1)
    )
    assert sweeps.sweep_breaches(now=T0 + timedelta(days=1)) == 0


def test_the_policy_may_raise_a_breached_cases_priority_without_moving_its_due_times(fresh, tight):
    tight.raise_priority_on_breach = True
    tight.save()
    due_before = (fresh.claim_due_at, fresh.resolve_due_at)
    sweeps.sweep_breaches(now=T0 + timedelta(minutes=11))
    fresh.refresh_from_db()
    assert fresh.priority == "high" and fresh.priority_rank == 1
    assert (fresh.claim_due_at, fresh.resolve_due_at) == due_before
    [event] = events(fresh, "sla.claim_breached")
    assert event.data["raised_from"] == "normal" and event.data["priority"] == "high"


def test_business_hours_put_the_breach_on_monday_morning(agent, tight):
    calendar = BusinessCalendar.objects.create(
        name="berlin-office",
        timezone="Europe/Berlin",
        weekly_hours={day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
    )
    tight.calendar = calendar
    tight.save()
    friday_1755 = datetime(2026, 3, 6, 16, 55, tzinfo=UTC)  # 17:55 in Berlin (CET)
    case = make_case(agent=agent, queue=tight, now=friday_1755)
    assert case.claim_due_at == datetime(2026, 3, 9, 8, 5, tzinfo=UTC)  # Monday 09:05 CET
    assert sweeps.sweep_breaches(now=datetime(2026, 3, 8, 12, 0, tzinfo=UTC)) == 0  # Sunday
    assert sweeps.sweep_breaches(now=datetime(2026, 3, 9, 8, 6, tzinfo=UTC)) == 1


def test_a_transfer_resets_due_times_and_keeps_the_breach_history(fresh, as_alice, support):
    sweeps.sweep_breaches(now=T0 + timedelta(minutes=11))
    fresh.refresh_from_db()
    breached_at = fresh.claim_breached_at
    moved_at = T0 + timedelta(minutes=12)
    moved = transitions.transfer(actor=as_alice, case_id=fresh.pk, to_queue=support, now=moved_at)
    assert moved.claim_due_at == moved_at + timedelta(hours=1)  # support: the defaults
    assert moved.claim_breached_at == breached_at
    assert sweeps.sweep_breaches(now=moved_at + timedelta(minutes=30)) == 0


def test_a_release_keeps_the_due_times(fresh, as_alice):
    claimed = transitions.claim(actor=as_alice, case_id=fresh.pk, now=T0 + timedelta(minutes=2))
    released = transitions.release(
        actor=as_alice,
        case_id=fresh.pk,
        claim_token=claimed.claim_token,
        now=T0 + timedelta(minutes=3),
    )
    assert released.claim_due_at == fresh.claim_due_at
    assert released.next_due_at == fresh.claim_due_at
    assert sweeps.sweep_breaches(now=T0 + timedelta(minutes=10, seconds=1)) == 1


# --- leases and expiry ------------------------------------------------------------------------


def test_the_lease_sweep_returns_abandoned_claims_to_open(fresh, as_alice):
    claimed = transitions.claim(actor=as_alice, case_id=fresh.pk, now=T0)
    assert sweeps.sweep_leases(now=claimed.lease_expires_at - timedelta(seconds=1)) == 0
    assert sweeps.sweep_leases(now=claimed.lease_expires_at) == 1
    assert sweeps.sweep_leases(now=claimed.lease_expires_at) == 0
    fresh.refresh_from_db()
    assert fresh.status == Status.OPEN and fresh.claimed_by is None
    assert len(events(fresh, "escalation.lease_expired")) == 1


def test_the_expiry_sweep_closes_cases_past_their_horizon(fresh, as_alice, agent, tight):
    transitions.claim(actor=as_alice, case_id=fresh.pk, now=T0)
    later = make_case(agent=agent, queue=tight, now=T0 + timedelta(days=1))
    horizon = fresh.expires_at
    assert sweeps.sweep_expiry(now=horizon - timedelta(seconds=1)) == 0
    assert sweeps.sweep_expiry(now=horizon) == 1
    assert sweeps.sweep_expiry(now=horizon) == 0
    fresh.refresh_from_db()
    later.refresh_from_db()
    assert fresh.status == Status.EXPIRED and later.status == Status.OPEN
    assert len(events(fresh, "escalation.expired")) == 1


# --- digests and checkpoints ------------------------------------------------------------------


def test_managers_get_one_digest_per_queue_and_nothing_twice(
    agent, tight, support, mona, alice, mailoutbox
):
    for _ in range(3):
        make_case(agent=agent, queue=tight, now=T0)
    make_case(agent=agent, queue=support, now=T0)
    sweeps.sweep_breaches(now=T0 + timedelta(hours=1, minutes=30))
    sent = sweeps.notify_breaches()
    # Refunds: both targets of 3 cases; support (defaults: claim 1 h, resolve 8 h): one claim.
    assert sent == 3 * 2 + 1
    subjects = sorted(mail.subject for mail in mailoutbox)
    assert subjects == [
        "[Handoff] 1 SLA breach in Support",
        "[Handoff] 6 SLA breaches in Refunds",
    ]
    assert all(mail.to == ["mona@example.com"] for mail in mailoutbox)  # managers only
    assert sweeps.notify_breaches() == 0
    assert len(mailoutbox) == 2


def test_a_queue_without_managers_sends_no_digest_but_moves_on(fresh, mailoutbox):
    sweeps.sweep_breaches(now=T0 + timedelta(minutes=11))
    assert sweeps.notify_breaches() == 1
    assert mailoutbox == []
    assert sweeps.notify_breaches() == 0


def test_the_hourly_checkpoint_logs_the_chain_head_in_a_form_verify_accepts(fresh, caplog):
    # The "handoff" loggers do not propagate to the root logger caplog listens on.
    logger = logging.getLogger("handoff.audit")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="handoff.audit"):
            seq, digest = audit.log_checkpoint()
    finally:
        logger.removeHandler(caplog.handler)
    line = next(r.getMessage() for r in caplog.records if r.name == "handoff.audit")
    assert f'"checkpoint":"{seq}:{digest}"' in line and '"event":"audit.checkpoint"' in line
    assert audit.verify_chain(checkpoint=audit.parse_checkpoint(f"{seq}:{digest}")).ok


# --- concurrency and cost ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_sweepers_racing_record_each_breach_exactly_once(agent, refunds):
    refunds.sla_policy = {"normal": {"claim": 600, "resolve": 3600}}
    refunds.save()
    cases = [make_case(agent=agent, queue=refunds, now=T0) for _ in range(20)]
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def sweeper() -> None:
        try:
            barrier.wait(timeout=10)
            counts.append(sweeps.sweep_breaches(now=T0 + timedelta(minutes=11)))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(counts) == 20
    for case in cases:
        assert len(events(case, "sla.claim_breached")) == 1
    assert audit.verify_chain().ok


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_the_breach_sweep_reads_only_cases_coming_due_through_its_partial_index(fresh):
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table would be scanned anyway
        plan = (
            Escalation.objects.filter(
                status=Status.OPEN, claim_breached_at__isnull=True, claim_due_at__lte=T0
            )
            .order_by("claim_due_at")
            .values("pk")
            .explain()
        )
        cursor.execute("SET enable_seqscan = on")
    assert "case_claim_breach_idx" in plan


def test_a_sweep_by_the_system_is_audited_as_the_system(fresh):
    sweeps.sweep_breaches(now=T0 + timedelta(minutes=11))
    assert events(fresh, "sla.claim_breached")[0].actor_name == Actor.system().name


def test_digests_go_to_active_managers_with_an_address(fresh, ops, mailoutbox):
    quiet = UserFactory(username="quiet-manager", email="")
    add_member(quiet, ops, "manager")
    sweeps.sweep_breaches(now=T0 + timedelta(minutes=11))
    sweeps.notify_breaches()
    assert mailoutbox == []


def test_a_sweep_records_its_breaches_in_queries_that_do_not_grow_with_their_number(
    agent, tight, django_assert_max_num_queries
):
    cases = [make_case(agent=agent, queue=tight, now=T0) for _ in range(30)]
    # Two reads of due cases, the lock, the read, one UPDATE, the chain head, its INSERT of the
    # events and its UPDATE, inside one transaction (SAVEPOINT/RELEASE under the test's own).
    with django_assert_max_num_queries(10):
        assert sweeps.sweep_breaches(now=T0 + timedelta(minutes=11)) == 30
    for case in cases:
        case.refresh_from_db()
        assert case.claim_breached_at == T0 + timedelta(minutes=11)
        assert len(events(case, "sla.claim_breached")) == 1
    assert audit.verify_chain().ok


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks")
def test_a_case_another_transaction_holds_is_left_for_the_next_sweep(agent, tight):
    busy, idle = (make_case(agent=agent, queue=tight, now=T0) for _ in range(2))
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                Escalation.objects.select_for_update().filter(pk=busy.pk).exists()
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        assert sweeps.sweep_breaches(now=T0 + timedelta(minutes=11)) == 1  # not waiting
    finally:
        release.set()
        holder.join(timeout=30)
    assert events(busy, "sla.claim_breached") == []
    assert len(events(idle, "sla.claim_breached")) == 1
    assert sweeps.sweep_breaches(now=T0 + timedelta(minutes=12)) == 1
    assert len(events(busy, "sla.claim_breached")) == 1
