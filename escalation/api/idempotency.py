"""Idempotency-Key handling for creates.

Within one transaction: take a transaction-scoped advisory lock on (agent, key) without
waiting — if another request holds it, that request is still in flight (409, retry in 1 s);
then replay a stored answer younger than 24 h, or run the create and store its 2xx answer in
the same transaction. An error rolls back everything, so only successes are ever replayed.
On SQLite (the embedded default) there are no advisory locks, and an IMMEDIATE transaction
would make the second request wait for the first and replay it; a non-blocking file lock per
key, taken before the transaction begins, gives it the same 409 instead.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
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


def _in_use() -> ApiError:
    return ApiError(
        409,
        "idempotency_key_in_use",
        "a request with this Idempotency-Key is still in flight",
        headers={"Retry-After": "1"},
    )


@contextmanager
def _file_lock(agent: Agent, key: str):
    """SQLite only: held from before the transaction until after its commit."""
    if connection.vendor != "sqlite":
        yield
        return
    lock_dir = Path(settings.VAR_DIR) / "idempotency-locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / hashlib.sha256(f"{agent.pk}:{key}".encode()).hexdigest()
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use() from None
        try:
            yield
        finally:
            # Unlinking while locked is safe: a request that still opened the old file is
            # serialized behind this one by SQLite and replays.
            path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_once(
    agent: Agent, key: str, body, create: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """(status, body, replayed). `create` runs at most once per (agent, key, 24 h)."""
    digest = request_hash(body)
    now = timezone.now()
    with _file_lock(agent, key), transaction.atomic():
        if not _try_lock(agent, key):
            raise _in_use()
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
