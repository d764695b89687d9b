"""Webhook delivery to agents, following Standard Webhooks.

A case reaching resolved, expired or cancelled (unless its agent cancelled it) gets a Delivery
row in the transaction that closed it. Each attempt takes the row's lease, checks the
destination against the SSRF rules, connects to the very address that passed the check, signs
afresh (both secrets for 24 h after a rotation), and records the outcome: success, a retry at
the next step of the schedule (with jitter), or dead. Retries are picked up by a periodic task
from `next_attempt_at`, never held as Celery countdowns.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import random
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta

import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook
from urllib3.connection import HTTPConnection, HTTPSConnection

from escalation import audit, outbox
from escalation.audit import Actor
from escalation.models import Delivery, DeliveryAttempt, DeliveryStatus, Escalation, Status
from escalation.ssrf import (
    Destination,
    DestinationRefused,
    DestinationUnreachable,
    resolve_destination,
)

log = logging.getLogger("handoff.delivery")

EVENT_TYPES = {
    Status.RESOLVED: "escalation.resolved",
    Status.EXPIRED: "escalation.expired",
    Status.CANCELLED: "escalation.cancelled",
}
MAX_RESPONSE_BYTES = 64 * 1024  # read no more of a receiver's answer than this
SECRET_OVERLAP = timedelta(hours=24)
JITTER = 0.2  # each delay varies by ±20 % so retries of many deliveries spread out


# --- scheduling ----------------------------------------------------------------------------------


def webhook_payload(case: Escalation, event_type: str, now: datetime) -> str:
    """The body: the case resource without its context and metadata (receivers fetch the
    whole case from `url`), so it stays small."""
    from escalation.api.serializers import case_resource

    data = {k: v for k, v in case_resource(case).items() if k not in ("context", "metadata")}
    return json.dumps(
        {"type": event_type, "timestamp": now.isoformat(), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def schedule(case: Escalation, now: datetime) -> Delivery | None:
    """Inside the transaction that closed the case: record the webhook it owes its agent."""
    event_type = EVENT_TYPES.get(case.status)
    if event_type is None or (case.status == Status.CANCELLED and case.cancelled_by_agent):
        return None  # an agent that cancelled its own case needs no telling
    url = case.callback_url or case.agent.callback_url
    if not url:
        return None
    delivery = Delivery.objects.create(
        webhook_id=f"msg_{uuid.uuid4().hex}",
        escalation=case,
        agent=case.agent,
        event_type=event_type,
        url=url,
        body=webhook_payload(case, event_type, now),
        next_attempt_at=now,
        created_at=now,
    )
    transaction.on_commit(lambda: ring(delivery.pk))
    return delivery


def ring(delivery_id: int) -> bool:
    from escalation.tasks import deliver_webhook

    return outbox.ring(deliver_webhook, delivery_id)


def due_deliveries(now: datetime, limit: int) -> list[int]:
    return list(
        Delivery.objects.filter(
            Q(locked_until__isnull=True) | Q(locked_until__lte=now),
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=now,
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


# --- one attempt ---------------------------------------------------------------------------------


def signature(agent, webhook_id: str, timestamp: datetime, body: str, now: datetime) -> str:
    """`v1,<sig>`; for a day after a rotation also the old secret's, space-separated."""
    secrets = [agent.webhook_secret]
    if (
        agent.previous_webhook_secret
        and agent.previous_secret_expires_at
        and agent.previous_secret_expires_at > now
    ):
        secrets.append(agent.previous_webhook_secret)
    return " ".join(Webhook(secret).sign(webhook_id, timestamp, body) for secret in secrets)


def attempt_deadline() -> float:
    """Seconds one attempt may take in all: the per-read timeouts alone do not bound a
    receiver that trickles its answer. Always shorter than the attempt's lease."""
    return settings.HANDOFF_WEBHOOK_CONNECT_TIMEOUT + settings.HANDOFF_WEBHOOK_READ_TIMEOUT


def _connection(destination: Destination):
    connect_timeout = settings.HANDOFF_WEBHOOK_CONNECT_TIMEOUT
    if destination.scheme == "https":
        # TLS is checked against the name in the URL, on a connection to the vetted address.
        return HTTPSConnection(
            destination.address,
            destination.port,
            timeout=connect_timeout,
            server_hostname=destination.host,
            assert_hostname=destination.host,
            cert_reqs="CERT_REQUIRED",
        )
    return HTTPConnection(destination.address, destination.port, timeout=connect_timeout)


def _post(destination: Destination, delivery: Delivery) -> tuple[int | None, str]:
    """(status, error): one POST to the vetted address, no redirects, capped read, and a
    watchdog that cuts the connection at the attempt's deadline."""
    sent_at = timezone.now()
    default_port = 443 if destination.scheme == "https" else 80
    host = f"[{destination.host}]" if ":" in destination.host else destination.host
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Handoff-Webhooks/1",
        "Host": host if destination.port == default_port else f"{host}:{destination.port}",
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature(
            delivery.agent, delivery.webhook_id, sent_at, delivery.body, sent_at
        ),
    }
    conn = _connection(destination)
    cut = threading.Event()

    def cut_off() -> None:
        cut.set()
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)  # unblocks the worker's pending read

    watchdog = threading.Timer(attempt_deadline(), cut_off)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        conn.sock.settimeout(settings.HANDOFF_WEBHOOK_READ_TIMEOUT)
        conn.request(
            "POST",
            destination.target,
            body=delivery.body.encode(),
            headers=headers,
            preload_content=False,
        )
        response = conn.getresponse()
        response.read(MAX_RESPONSE_BYTES, decode_content=False)
        status = response.status
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        if cut.is_set():
            return None, f"no complete answer within {attempt_deadline()} s"
        return None, f"{type(exc).__name__}: {exc}"[:500]
    finally:
        watchdog.cancel()
        conn.close()
    if cut.is_set():
        return None, f"no complete answer within {attempt_deadline()} s"
    if 300 <= status < 400:
        return status, "redirect not followed"
    return status, ""


def retry_delay(attempt_number: int) -> float | None:
    """Seconds before the next attempt after `attempt_number` failed; None when spent."""
    steps = settings.HANDOFF_WEBHOOK_RETRY_SCHEDULE
    if attempt_number > len(steps):
        return None
    return steps[attempt_number - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311


def attempt(delivery_id: int, now: datetime | None = None) -> str:
    """One attempt if the delivery is due and free: 'succeeded', 'retry', 'dead' or 'skipped'."""
    now = now or timezone.now()
    lease_until = now + timedelta(seconds=settings.HANDOFF_WEBHOOK_LEASE_SECONDS)
    taken = Delivery.objects.filter(
        Q(locked_until__isnull=True) | Q(locked_until__lte=now),
        pk=delivery_id,
        status=DeliveryStatus.PENDING,
        next_attempt_at__lte=now,
    ).update(locked_until=lease_until)
    if not taken:
        return "skipped"
    delivery = Delivery.objects.select_related("agent", "escalation").get(pk=delivery_id)
    started = time.monotonic()
    dead_reason = ""
    try:
        destination = resolve_destination(delivery.url)
    except DestinationRefused as exc:
        status_code, error, dead_reason = None, str(exc), str(exc)
    except DestinationUnreachable as exc:
        status_code, error = None, str(exc)
    else:
        status_code, error = _post(destination, delivery)
    if status_code == 410:
        dead_reason = "the receiver answered 410 Gone"
    elif status_code is not None and not 200 <= status_code < 300 and not error:
        error = f"the receiver answered {status_code}"
    return _record(
        delivery,
        lease_until,
        now,
        int((time.monotonic() - started) * 1000),
        status_code,
        error,
        dead_reason,
    )


def _record(
    delivery: Delivery,
    lease_until: datetime,
    started_at: datetime,
    duration_ms: int,
    status_code: int | None,
    error: str,
    dead_reason: str,
) -> str:
    now = timezone.now()
    with transaction.atomic():
        current = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("agent", "escalation")
            .get(pk=delivery.pk)
        )
        if current.locked_until != lease_until or current.status != DeliveryStatus.PENDING:
            # This attempt outlived its lease and another has taken over (or finished): its
            # outcome must not overwrite theirs.
            log.warning("delivery %s: an attempt that lost its lease was discarded", delivery.pk)
            return "stale"
        return _record_held(current, started_at, duration_ms, status_code, error, dead_reason, now)


def _record_held(
    delivery: Delivery,
    started_at: datetime,
    duration_ms: int,
    status_code: int | None,
    error: str,
    dead_reason: str,
    now: datetime,
) -> str:
    """Record one attempt's outcome; runs in the transaction that holds the row's lock."""
    number = delivery.attempts + 1
    succeeded = status_code is not None and 200 <= status_code < 300 and not error
    delay = None if succeeded or dead_reason else retry_delay(number)
    if not succeeded and not dead_reason and delay is None:
        dead_reason = f"no success after {number} attempts"
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=number,
        started_at=started_at,
        duration_ms=duration_ms,
        status_code=status_code,
        error=error[:500],
    )
    delivery.attempts = number
    delivery.locked_until = None
    delivery.last_status_code = status_code
    delivery.last_error = (dead_reason or error)[:500]
    facts = {
        "delivery": delivery.pk,
        "webhook_id": delivery.webhook_id,
        "attempt": number,
        "status_code": status_code,
        "url": delivery.url,
    }
    events: list[tuple[str, dict]] = []
    if succeeded:
        delivery.status, delivery.delivered_at = DeliveryStatus.SUCCEEDED, now
        events.append(("delivery.succeeded", facts))
        outcome = "succeeded"
    else:
        events.append(("delivery.failed", {**facts, "error": error[:200]}))
        if dead_reason:
            delivery.status, delivery.dead_at = DeliveryStatus.DEAD, now
            events.append(("delivery.dead", {**facts, "reason": dead_reason[:200]}))
            outcome = "dead"
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
            outcome = "retry"
    delivery.save()
    for verb, data in events:
        audit.record(actor=Actor.system(), verb=verb, case=delivery.escalation, now=now, data=data)
    log.info("delivery %s attempt %s: %s (%s)", delivery.pk, number, outcome, status_code or error)
    return outcome


# --- redelivery ----------------------------------------------------------------------------------


class RedeliveryError(Exception):
    pass


def redeliver(*, delivery_id: int, actor: Actor, now: datetime | None = None) -> Delivery:
    """Send a dead delivery again, same webhook-id, with a fresh schedule."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            raise RedeliveryError(f"no delivery {delivery_id}")
        if delivery.status != DeliveryStatus.DEAD:
            raise RedeliveryError(f"delivery {delivery_id} is {delivery.status}, not dead")
        delivery.status = DeliveryStatus.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = now
        delivery.locked_until = None
        delivery.dead_at = None
        delivery.save()
        audit.record(
            actor=actor,
            verb="delivery.redelivered",
            case=delivery.escalation,
            now=now,
            data={"delivery": delivery.pk, "webhook_id": delivery.webhook_id},
        )
        transaction.on_commit(lambda: ring(delivery.pk))
    return delivery
