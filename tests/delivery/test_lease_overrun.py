"""An attempt must end within its lease: the lease is what keeps a second attempt of the same
delivery from starting while the first is still running (spec: "An attempt in progress holds
a lease (`locked_until`) in its row"). The connect and read timeouts are per socket operation,
so a receiver that trickles its answer a byte at a time, each byte inside the read timeout,
keeps an attempt going past its lease unless the attempt has an overall deadline.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import delivery, outbox
from escalation.models import Delivery, DeliveryStatus
from tests.delivery.helpers import attempt_log, delivery_of, fresh, resolve
from tests.delivery.receiver import Reply
from tests.factories import make_case
from tests.support import wait_until

LEASE = 3  # seconds, with 1 s connect and 1 s read timeouts


@pytest.fixture
def short_lease(settings):
    settings.HANDOFF_WEBHOOK_CONNECT_TIMEOUT = 1
    settings.HANDOFF_WEBHOOK_READ_TIMEOUT = 1
    settings.HANDOFF_WEBHOOK_LEASE_SECONDS = LEASE
    return settings


@pytest.mark.django_db
def test_an_attempt_against_a_trickling_receiver_ends_within_its_lease(
    short_lease, hooked_agent, refunds, alice, receiver
):
    case = make_case(agent=hooked_agent, queue=refunds)
    resolve(case, alice)
    item = delivery_of(case)
    # One header byte every 0.4 s (well inside the 1 s read timeout) for 6 s in all.
    receiver.answer(Reply(200, drip=0.4, drip_bytes=15))

    started = time.monotonic()
    delivery.attempt(item.pk)
    elapsed = time.monotonic() - started

    assert elapsed < LEASE, (
        f"the attempt ran {elapsed:.1f} s, past its {LEASE} s lease: another worker could "
        f"have started the same delivery meanwhile (attempt log: {attempt_log(item)})"
    )


@pytest.mark.django_db(transaction=True)
def test_a_trickled_failure_is_cut_before_the_lease_and_the_retry_succeeds(
    short_lease, hooked_agent, refunds, alice, receiver, monkeypatch
):
    monkeypatch.setattr(outbox, "ring", lambda task, row_id: False)  # attempts run by hand
    case = make_case(agent=hooked_agent, queue=refunds)
    resolve(case, alice)
    item = delivery_of(case)
    # The first attempt meets a receiver trickling a 500 for ~6 s; the next one gets a 200.
    receiver.answer(Reply(500, drip=0.4, drip_bytes=15), 200)

    first = delivery.attempt(item.pk)
    after_first = fresh(item)
    assert first == "retry"
    assert "no complete answer" in after_first.last_error
    assert after_first.locked_until is None  # released well inside its lease

    assert wait_until(lambda: timezone.now() >= after_first.next_attempt_at, timeout=5)
    assert delivery.attempt(item.pk) == "succeeded"
    done = fresh(item)
    assert done.status == DeliveryStatus.SUCCEEDED and done.attempts == 2
    assert [n for n, _, _ in attempt_log(item)] == [1, 2]


def test_an_outcome_recorded_after_the_lease_was_taken_over_is_discarded(
    hooked_agent, refunds, alice
):
    case = make_case(agent=hooked_agent, queue=refunds)
    resolve(case, alice)
    item = delivery_of(case)
    mine = timezone.now() + timedelta(seconds=30)
    theirs = mine + timedelta(seconds=5)
    Delivery.objects.filter(pk=item.pk).update(locked_until=theirs)  # another attempt holds it

    outcome = delivery._record(item, mine, timezone.now(), 10, 500, "late failure", "")

    assert outcome == "stale"
    after = fresh(item)
    assert after.locked_until == theirs and after.attempts == 0
    assert after.status == DeliveryStatus.PENDING
    assert attempt_log(item) == []
