"""One attempt at a time, driven in-process: retries on the (compressed) schedule with the same
webhook-id and a fresh signature each time; dead after the schedule, then redelivered by hand;
410 dead at once; redirects not followed; timeouts, refused connections and huge answers; the
lease that keeps two attempts apart."""

from __future__ import annotations

import io
import socket
import time

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from escalation import delivery, sweeps
from escalation.models import DeliveryStatus
from tests.delivery.helpers import (
    attempt_log,
    attempt_when_due,
    audit_data,
    delivery_of,
    delivery_verbs,
    fresh,
    resolve,
    seconds,
)
from tests.delivery.receiver import Reply
from tests.factories import make_case
from tests.support import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed(hooked_agent, refunds, alice):
    """A resolved case of refund-bot (whose callback is `receiver`) and its delivery."""
    case = make_case(agent=hooked_agent, queue=refunds)
    resolve(case, alice)
    return case, delivery_of(case)


def test_500_500_200_is_three_attempts_with_one_webhook_id_each_signed_afresh(
    closed, receiver, hooked_agent
):
    case, item = closed
    receiver.answer(500, 500, 200)
    outcomes, gaps = [], []
    with time_machine.travel(timezone.now(), tick=True) as clock:
        for _ in range(3):
            before = timezone.now()
            outcomes.append(attempt_when_due(item))
            after = timezone.now()
            if outcomes[-1] == "retry":
                due = fresh(item).next_attempt_at
                gaps.append(((due - after).total_seconds(), (due - before).total_seconds()))
            clock.shift(2)  # past the next due time (1 s ± 20 %), and a new second to sign in

    assert outcomes == ["retry", "retry", "succeeded"]
    # Each retry is due one schedule step (1 s, ±20 % jitter) after the failed attempt.
    for low, high in gaps:
        assert low <= 1.2 and high >= 0.8, gaps
    requests = receiver.received()
    assert len(requests) == 3
    assert {request.webhook_id for request in requests} == {item.webhook_id}
    stamps = [int(request.headers["webhook-timestamp"]) for request in requests]
    assert stamps[0] < stamps[1] < stamps[2], stamps
    for request in requests:
        assert abs(int(request.headers["webhook-timestamp"]) - request.at) <= 1.5
        assert request.verify(hooked_agent.webhook_secret)["type"] == "escalation.resolved"
        assert request.body.decode() == item.body  # the same event each time

    done = fresh(item)
    assert done.status == DeliveryStatus.SUCCEEDED and done.attempts == 3
    assert done.last_status_code == 200 and done.last_error == ""
    assert attempt_log(item) == [
        (1, 500, "the receiver answered 500"),
        (2, 500, "the receiver answered 500"),
        (3, 200, ""),
    ]
    assert delivery_verbs(case) == ["delivery.failed", "delivery.failed", "delivery.succeeded"]
    assert [facts["attempt"] for facts in audit_data(case, "delivery.failed")] == [1, 2]


def test_a_receiver_that_never_succeeds_makes_the_delivery_dead_then_redeliver_sends_it(
    closed, receiver, hooked_agent
):
    case, item = closed
    receiver.answer(500)
    outcomes = []
    with time_machine.travel(timezone.now(), tick=True) as clock:
        for _ in range(3):  # len(schedule) + 1 attempts
            outcomes.append(attempt_when_due(item))
            clock.shift(2)
        assert delivery.attempt(item.pk, now=timezone.now() + seconds(3600)) == "skipped"
        assert sweeps.sweep_deliveries(now=timezone.now() + seconds(3600)) == 0

    assert outcomes == ["retry", "retry", "dead"]
    dead = fresh(item)
    assert dead.status == DeliveryStatus.DEAD and dead.attempts == 3
    assert dead.dead_at is not None and dead.last_status_code == 500
    assert "3 attempts" in dead.last_error, dead.last_error
    assert delivery_verbs(case) == ["delivery.failed"] * 3 + ["delivery.dead"]
    [facts] = audit_data(case, "delivery.dead")
    assert facts["webhook_id"] == item.webhook_id and facts["reason"]
    assert len(receiver.received()) == 3

    receiver.answer(200)
    out = io.StringIO()
    call_command("redeliver", dead=True, stdout=out)
    assert item.webhook_id in out.getvalue()
    assert out.getvalue().strip().splitlines()[-1].startswith("1 ")
    again = fresh(item)
    assert again.status == DeliveryStatus.PENDING and again.dead_at is None
    assert again.next_attempt_at <= timezone.now()

    # The periodic task picks it up (the eager outbox runs the attempt in-process).
    assert sweeps.sweep_deliveries() == 1

    done = fresh(item)
    assert done.status == DeliveryStatus.SUCCEEDED
    requests = receiver.received()
    assert len(requests) == 4
    assert {request.webhook_id for request in requests} == {item.webhook_id}
    requests[-1].verify(hooked_agent.webhook_secret)
    assert delivery_verbs(case)[-2:] == ["delivery.redelivered", "delivery.succeeded"]
    # Nothing is left to redeliver.
    out = io.StringIO()
    call_command("redeliver", dead=True, stdout=out)
    assert out.getvalue().strip().splitlines()[-1].startswith("0 ")


def test_redeliver_one_delivery_by_id_and_refuse_one_that_is_not_dead(closed, receiver):
    from django.core.management.base import CommandError

    case, item = closed
    with pytest.raises(CommandError, match="not dead"):
        call_command("redeliver", delivery=item.pk, stdout=io.StringIO())
    receiver.answer(410)
    assert delivery.attempt(item.pk) == "dead"
    receiver.answer(200)

    call_command("redeliver", delivery=item.pk, stdout=io.StringIO())
    assert sweeps.sweep_deliveries() == 1

    assert fresh(item).status == DeliveryStatus.SUCCEEDED
    assert [r.webhook_id for r in receiver.received()] == [item.webhook_id] * 2


def test_410_gone_makes_the_delivery_dead_after_one_attempt(closed, receiver):
    case, item = closed
    receiver.answer(410, 200)

    assert delivery.attempt(item.pk) == "dead"

    dead = fresh(item)
    assert dead.status == DeliveryStatus.DEAD and dead.attempts == 1
    assert dead.last_status_code == 410 and "410" in dead.last_error
    assert delivery_verbs(case) == ["delivery.failed", "delivery.dead"]
    assert len(receiver.received()) == 1
    assert sweeps.sweep_deliveries(now=timezone.now() + seconds(3600)) == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_and_is_not_followed(closed, receiver, make_receiver, status):
    case, item = closed
    elsewhere = make_receiver(200)
    receiver.answer(Reply(status, location=elsewhere.url("/stolen")))

    assert delivery.attempt(item.pk) == "retry"

    assert attempt_log(item) == [(1, status, "redirect not followed")]
    after = fresh(item)
    assert after.status == DeliveryStatus.PENDING and after.last_status_code == status
    assert delivery_verbs(case) == ["delivery.failed"]
    assert len(receiver.received()) == 1
    assert elsewhere.received() == [] and elsewhere.connections == 0


def test_a_receiver_slower_than_the_read_timeout_is_a_failed_attempt(closed, receiver, settings):
    case, item = closed
    settings.HANDOFF_WEBHOOK_READ_TIMEOUT = 1
    receiver.answer(Reply(200, delay=10))

    started = time.monotonic()
    assert delivery.attempt(item.pk) == "retry"
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 5, elapsed
    [(number, status_code, error)] = attempt_log(item)
    assert number == 1 and status_code is None
    assert "timed out" in error.lower(), error
    after = fresh(item)
    assert after.status == DeliveryStatus.PENDING and after.locked_until is None
    assert "timed out" in after.last_error.lower()


def test_a_refused_connection_is_a_failed_attempt(hooked_agent, refunds, alice):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    case = make_case(agent=hooked_agent, queue=refunds, callback_url=f"http://127.0.0.1:{port}/")
    resolve(case, alice)
    item = delivery_of(case)

    assert delivery.attempt(item.pk) == "retry"

    [(number, status_code, error)] = attempt_log(item)
    assert status_code is None and error
    assert fresh(item).status == DeliveryStatus.PENDING


def test_a_huge_answer_is_read_only_up_to_the_cap(closed, receiver):
    case, item = closed
    huge = 64 * 1024 * 1024
    receiver.answer(Reply(200, huge=huge))

    started = time.monotonic()
    assert delivery.attempt(item.pk) == "succeeded"
    assert time.monotonic() - started < 5

    assert wait_until(lambda: receiver.finished == 1, timeout=10)
    assert receiver.bytes_sent < huge / 4, receiver.bytes_sent
    assert fresh(item).status == DeliveryStatus.SUCCEEDED


def test_a_live_lease_keeps_a_second_attempt_out_and_an_expired_one_lets_it_run(closed, receiver):
    case, item = closed
    now = timezone.now()
    type(item).objects.filter(pk=item.pk).update(locked_until=now + seconds(60))

    assert delivery.attempt(item.pk, now=now) == "skipped"
    assert item.pk not in delivery.due_deliveries(now, 100)
    assert sweeps.sweep_deliveries(now=now) == 0
    assert receiver.received() == [] and attempt_log(item) == []

    type(item).objects.filter(pk=item.pk).update(locked_until=now - seconds(1))
    assert item.pk in delivery.due_deliveries(now, 100)
    assert delivery.attempt(item.pk, now=now) == "succeeded"
    assert len(receiver.received()) == 1
    assert fresh(item).locked_until is None


def test_an_attempt_takes_a_lease_of_the_configured_length(closed, receiver, settings, monkeypatch):
    case, item = closed
    seen = {}

    def spy(destination, held):
        seen["locked_until"] = fresh(held).locked_until
        return 200, ""

    now = timezone.now()
    monkeypatch.setattr(delivery, "_post", spy)
    assert delivery.attempt(item.pk, now=now) == "succeeded"
    assert seen["locked_until"] == now + seconds(settings.HANDOFF_WEBHOOK_LEASE_SECONDS)


def test_an_attempt_runs_only_when_due_and_only_while_pending(closed, receiver):
    case, item = closed
    receiver.answer(500, 200)
    assert delivery.attempt(item.pk) == "retry"
    assert delivery.attempt(item.pk) == "skipped"  # its retry is not due yet
    assert len(receiver.received()) == 1

    assert attempt_when_due(item) == "succeeded"
    assert attempt_when_due(item, at=timezone.now() + seconds(3600)) == "skipped"
    assert len(receiver.received()) == 2
    assert delivery_verbs(case) == ["delivery.failed", "delivery.succeeded"]


def test_the_periodic_task_sends_only_due_deliveries(hooked_agent, refunds, alice, receiver):
    cases = [make_case(agent=hooked_agent, queue=refunds) for _ in range(2)]
    for case in cases:
        resolve(case, alice)
    later = delivery_of(cases[1])
    type(later).objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + seconds(60))

    assert sweeps.sweep_deliveries() == 1

    assert [r.webhook_id for r in receiver.received()] == [delivery_of(cases[0]).webhook_id]
    assert fresh(later).status == DeliveryStatus.PENDING


def test_a_retry_hours_later_is_signed_with_a_fresh_timestamp_that_still_verifies(
    closed, receiver, hooked_agent, settings
):
    case, item = closed
    settings.HANDOFF_WEBHOOK_RETRY_SCHEDULE = [6 * 3600]
    receiver.answer(500, 200)
    with time_machine.travel(timezone.now(), tick=True) as clock:
        assert delivery.attempt(item.pk) == "retry"
        clock.shift(6 * 3600 + 2 * 3600)  # past the 6 h step, even with +20 % jitter
        assert attempt_when_due(item) == "succeeded"
        first, second = receiver.received()
        # A receiver checking the 5-minute window at that moment accepts the retry.
        assert second.verify(hooked_agent.webhook_secret)["type"] == "escalation.resolved"
        gap = int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"])
        assert gap >= 6 * 3600
    assert first.webhook_id == second.webhook_id == item.webhook_id


def test_the_default_schedule_backs_off_for_at_least_a_day_with_jitter(settings):
    from handoff import settings as project_settings

    schedule = project_settings.HANDOFF_WEBHOOK_RETRY_SCHEDULE
    assert schedule == sorted(schedule) and schedule[0] < schedule[-1]
    assert sum(schedule) >= 24 * 3600
    settings.HANDOFF_WEBHOOK_RETRY_SCHEDULE = schedule
    for number, step in enumerate(schedule, start=1):
        delays = {delivery.retry_delay(number) for _ in range(20)}
        assert all(0.8 * step <= delay <= 1.2 * step for delay in delays), (number, delays)
        assert len(delays) > 1  # jittered
    assert delivery.retry_delay(len(schedule) + 1) is None
