"""Idempotency-Key handling for creates.

Within one transaction: take a transaction-scoped advisory lock on (agent, key) without
waiting — if another request holds it, that request is still in flight (409, retry in 1 s);
then replay a stored answer younger than 24 h, or run the create and store its 2xx answer in
the same transaction. An error rolls back everything, so only successes are ever replayed.
On SQLite the IMMEDIATE transaction already serializes writers, so the second request waits
and then replays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from django.db import connection, transaction
from django.utils import timezone

from escalation.api.errors import ApiError
from escalation.audit import canonical_json
from escalation.models import Agent, IdempotencyRecord
from escalation.models.agents import IDEMPOTENCY_TTL

MAX_KEY_LENGTH = 255


def request_hash(body) -> str:
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _try_lock(agent: Agent, key: str) -> bool:
    if connection.vendor != "postgresql":
        return True
    digest = hashlib.sha256(f"idempotency:{agent.pk}:{key}".encode()).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id])
        return bool(cursor.fetchone()[0])


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            400,
            "invalid",
            "Idempotency-Key must be 1-255 printable characters",
            fields={"Idempotency-Key": "1-255 printable characters"},
        )
    return key


def run_once(
    agent: Agent, key: str, body, create: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """(status, body, replayed). `create` runs at most once per (agent, key, 24 h)."""
    digest = request_hash(body)
    now = timezone.now()
    with transaction.atomic():
        if not _try_lock(agent, key):
            raise ApiError(
                409,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still in flight",
                headers={"Retry-After": "1"},
            )
        record = IdempotencyRecord.objects.filter(agent=agent, key=key).first()
        if record is not None and record.created_at > now - IDEMPOTENCY_TTL:
            if record.request_hash != digest:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different body",
                )
            return record.status_code, record.response_body, True
        status, response_body = create()
        IdempotencyRecord.objects.update_or_create(
            agent=agent,
            key=key,
            defaults={
                "request_hash": digest,
                "status_code": status,
                "response_body": response_body,
                "created_at": now,
            },
        )
        return status, response_body, False
