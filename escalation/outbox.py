"""Follow-up work as database rows: enqueue inside the change's transaction, ring Celery after
commit, run each item at most once at a time, re-drive what is left.

A publish never fails the request that caused it: the broker gets a short connect timeout and
no retries, and a failed send is simply left for the periodic re-drive. Nor does a request
wait for it: after commit the ids go to the process's Doorbell, whose thread sends them, many
to a message under load.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from escalation import rows
from escalation.models import OutboxItem

log = logging.getLogger("handoff.outbox")

ITEM_LEASE = timedelta(seconds=120)
RETRY_DELAYS = (10, 30, 60, 300, 900)  # seconds; then every 15 minutes


@functools.cache
def _handlers() -> dict[str, Callable[[OutboxItem], None]]:
    # Imported late: the handlers live in modules that themselves enqueue outbox work. Built
    # once (every create asks it for its kind); each handler looks its function up when called.
    from escalation import notifications, transitions

    return {
        "route": lambda item: transitions.route(case_id=item.escalation_id),
        "notify_urgent": lambda item: notifications.email_urgent_case(item.escalation_id),
        "notify_autonomy": lambda item: notifications.email_autonomy_change(item.payload),
    }


def enqueue(kind: str, *, case=None, payload: dict | None = None) -> OutboxItem:
    """Record work in the current transaction and ring the doorbell once it commits."""
    return enqueue_many(kind, cases=[case], payload=payload)[0]


def enqueue_many(kind: str, *, cases: Sequence, payload: dict | None = None) -> list[OutboxItem]:
    """One item per case in one INSERT, and one doorbell for them all once the transaction
    commits (a batch of a hundred cases is one Celery message, not a hundred)."""
    if kind not in _handlers():
        raise ValueError(f"unknown outbox kind {kind!r}")
    items = [OutboxItem(kind=kind, escalation=case, payload=payload or {}) for case in cases]
    rows.insert(items)
    ids = [item.pk for item in items]
    transaction.on_commit(lambda: send_soon(ids))
    return items


def ring(task, row_id) -> bool:
    """Send a row's id (or a list of ids) to a Celery task: the doorbell for work already
    recorded in the database. False (logged, never raised) when the broker is unreachable;
    the periodic re-drive sends it again."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        task.apply(args=[row_id])
        return True
    try:
        task.apply_async(args=[row_id], retry=False)
    except Exception as exc:  # noqa: BLE001 - any broker failure is left to the re-drive
        log.warning("%s(%s) not sent (%s); the re-drive will retry", task.name, row_id, exc)
        return False
    return True


def send(*item_ids: int) -> bool:
    """Hand outbox items to Celery (see ring): one message, whatever their number."""
    from escalation.tasks import run_outbox_item, run_outbox_items

    if len(item_ids) == 1:
        return ring(run_outbox_item, item_ids[0])
    return ring(run_outbox_items, list(item_ids))


# The most ids in one message: a worker runs a message's items one after another.
MAX_IDS_PER_MESSAGE = 50


class Doorbell:
    """Sends committed outbox items to Celery from one thread per process, with every id that
    has gathered since its last send in one message (up to MAX_IDS_PER_MESSAGE).

    A publish costs about a millisecond of CPU in kombu and Celery (bench/RESULTS.md): under
    load, most of it is saved, and no request thread spends it. The thread waits
    HANDOFF_OUTBOX_RING_LINGER_MS after the first id for others to join it. Ids it has not
    sent when the process dies are left to the re-drive, like a failed send."""

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._gathered = threading.Condition()
        self._pid: int | None = None

    def ring(self, ids: Sequence[int]) -> None:
        with self._gathered:
            if self._pid != os.getpid():
                # First use in this process (a forked child inherits no thread, and its
                # parent sends what it had gathered itself).
                self._pid, self._ids = os.getpid(), []
                threading.Thread(target=self._run, name="outbox-doorbell", daemon=True).start()
                atexit.register(self.flush)
            self._ids.extend(ids)
            self._gathered.notify()

    def _run(self) -> None:
        while True:
            with self._gathered:
                self._gathered.wait_for(lambda: self._ids)
                # Other commits' ids join for the linger, unless a flush() takes them first.
                deadline = time.monotonic() + settings.HANDOFF_OUTBOX_RING_LINGER_MS / 1000
                while self._ids and (left := deadline - time.monotonic()) > 0:
                    self._gathered.wait(left)
            try:
                self.flush()
            except Exception:  # the thread must outlive anything: its ids are the re-drive's
                log.exception("the outbox doorbell failed to send")

    def flush(self) -> None:
        """Send what has gathered, now (also at exit)."""
        with self._gathered:
            ids, self._ids = self._ids, []
            self._gathered.notify()  # the thread's linger ends: nothing is left to wait for
        for start in range(0, len(ids), MAX_IDS_PER_MESSAGE):
            send(*ids[start : start + MAX_IDS_PER_MESSAGE])


doorbell = Doorbell()


def send_soon(item_ids: Sequence[int]) -> None:
    """Hand committed items to the Doorbell (at once, with eager tasks)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        send(*item_ids)
    else:
        doorbell.ring(item_ids)


def perform(item_id: int, *, now: datetime | None = None) -> str:
    """Run one item if it still needs running. Returns 'done', 'skipped' or 'failed'.

    The conditional UPDATE takes the item's lease, so two deliveries of the same id (the
    after-commit send and a re-drive) never run it at once; handlers are idempotent besides.
    """
    now = now or timezone.now()
    taken = OutboxItem.objects.filter(
        Q(locked_until__isnull=True) | Q(locked_until__lte=now),
        pk=item_id,
        done_at__isnull=True,
    ).update(locked_until=now + ITEM_LEASE)
    if not taken:
        return "skipped"
    item = OutboxItem.objects.get(pk=item_id)
    try:
        _handlers()[item.kind](item)
    except Exception as exc:
        delay = RETRY_DELAYS[min(item.attempts, len(RETRY_DELAYS) - 1)]
        OutboxItem.objects.filter(pk=item_id).update(
            attempts=item.attempts + 1,
            locked_until=None,
            available_at=timezone.now() + timedelta(seconds=delay),
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        log.exception("outbox item %s (%s) failed; retrying in %ss", item_id, item.kind, delay)
        return "failed"
    OutboxItem.objects.filter(pk=item_id).update(
        done_at=timezone.now(), locked_until=None, attempts=item.attempts + 1, last_error=""
    )
    return "done"


def resent(item_ids: Sequence[int], now: datetime) -> None:
    """Leave items the re-drive has just sent to their worker for a while before sending them
    again. Re-sent every run instead, a backlog that outlasts the re-drive period grew by a
    message per item per run, faster than workers skip them (make soak found it)."""
    OutboxItem.objects.filter(pk__in=item_ids, done_at__isnull=True, available_at__lte=now).update(
        available_at=now + timedelta(seconds=settings.HANDOFF_OUTBOX_RESEND_SECONDS)
    )


def due_items(now: datetime, limit: int) -> list[int]:
    """Ids of undone items whose after-commit send had its chance and that nobody holds."""
    grace = timedelta(seconds=settings.HANDOFF_OUTBOX_GRACE_SECONDS)
    return list(
        OutboxItem.objects.filter(
            Q(locked_until__isnull=True) | Q(locked_until__lte=now),
            done_at__isnull=True,
            available_at__lte=now,
            created_at__lte=now - grace,
        )
        .order_by("available_at")
        .values_list("pk", flat=True)[:limit]
    )
