"""Idempotency-Key handling for creates (the header of a single create, or each batch item's
idempotency_key: one Ledger per transaction holds them all).

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
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from escalation import rows
from escalation.api.errors import ApiError
from escalation.audit import canonical_json
from escalation.models import Agent, IdempotencyRecord
from escalation.models.agents import IDEMPOTENCY_TTL

MAX_KEY_LENGTH = 255


def request_hash(body) -> str:
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _lock_id(agent: Agent, key: str) -> int:
    digest = hashlib.sha256(f"idempotency:{agent.pk}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _busy_keys(agent: Agent, keys: set[str]) -> set[str]:
    """Take a transaction-scoped advisory lock on each key without waiting, in one query; the
    keys another transaction holds are returned."""
    if connection.vendor != "postgresql" or not keys:
        return set()
    ordered = sorted(keys)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key FROM unnest(%s::text[], %s::bigint[]) AS held(key, lock_id)"
            " WHERE NOT pg_try_advisory_xact_lock(lock_id)",
            [ordered, [_lock_id(agent, key) for key in ordered]],
        )
        return {row[0] for row in cursor.fetchall()}


def _stored(agent: Agent, keys: set[str], since) -> list[IdempotencyRecord]:
    """The agent's records of these keys stored after `since` (plain SQL: every create with a
    key reads them)."""
    if not keys:
        return []
    key_list = ", ".join(["%s"] * len(keys))
    sql = (
        f"SELECT {rows.columns(IdempotencyRecord, 'r')} FROM {rows.table(IdempotencyRecord)} r"  # noqa: S608
        f" WHERE r.agent_id = %s AND r.key IN ({key_list}) AND r.created_at > %s"
    )
    prepared_since = IdempotencyRecord._meta.get_field("created_at").get_db_prep_value(
        since, connection
    )
    return [
        record
        for (record,) in rows.select(sql, [agent.pk, *keys, prepared_since], IdempotencyRecord)
    ]


def check_key(key, field: str = "Idempotency-Key") -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            400,
            "invalid",
            f"{field} must be 1-255 printable characters",
            fields={field: "1-255 printable characters"},
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


class Ledger:
    """The Idempotency-Keys of one transaction (one create, or every item of a batch): which
    are in flight elsewhere, the answers stored for the rest, and the new answers to store."""

    def __init__(self, agent: Agent, keys: set[str], busy: set[str]) -> None:
        """Inside the transaction: take the advisory locks and read the stored answers."""
        self.agent, self.now = agent, timezone.now()
        self.busy = busy | _busy_keys(agent, keys - busy)
        records = _stored(agent, keys - self.busy, self.now - IDEMPOTENCY_TTL)
        self.answers = {r.key: (r.request_hash, r.status_code, r.response_body) for r in records}
        self.new: list[IdempotencyRecord] = []

    def replay(self, key: str, digest: str) -> tuple[int, dict] | None:
        """The stored (status, body) for this key and body; None when there is none yet.
        409 while another request holds the key, 422 when it came with another body."""
        if key in self.busy:
            raise _in_use()
        answer = self.answers.get(key)
        if answer is None:
            return None
        stored_digest, status, body = answer
        if stored_digest != digest:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different body",
            )
        return status, body

    def remember(self, key: str, digest: str, status: int, body: dict) -> None:
        """A 2xx answer, replayed from now on (within this transaction too) and stored with it."""
        self.answers[key] = (digest, status, body)
        self.new.append(
            IdempotencyRecord(
                agent=self.agent,
                key=key,
                request_hash=digest,
                status_code=status,
                response_body=body,
                created_at=self.now,
            )
        )

    def run(
        self, key: str | None, body, create: Callable[[], tuple[int, dict]]
    ) -> tuple[int, dict, bool]:
        """(status, body, replayed): the answer stored for this key and body, else create()'s,
        remembered (create answers 2xx or raises). Without a key, simply create()'s."""
        if key is None:
            return *create(), False
        digest = request_hash(body)
        answer = self.replay(key, digest)
        if answer is not None:
            return *answer, True
        status, response_body = create()
        self.remember(key, digest, status, response_body)
        return status, response_body, False

    def save(self) -> None:
        # A record past its 24 h is overwritten in place.
        rows.insert(
            self.new,
            unique_fields=["agent", "key"],
            update_fields=["request_hash", "status_code", "response_body", "created_at"],
        )


@contextmanager
def held(agent: Agent, keys: Iterable[str], *, refuse_in_flight: bool = False) -> Iterator[Ledger]:
    """A transaction holding `keys` for this request until it commits. A key in flight
    elsewhere is refused by Ledger.replay, or with `refuse_in_flight` by its file lock at once
    (beginning the transaction would first wait for the other request on SQLite). An exception
    rolls everything back, so only answers remembered in a committed transaction are ever
    replayed."""
    keys = set(keys)
    busy: set[str] = set()
    with ExitStack() as locks:
        for key in keys:
            try:
                locks.enter_context(_file_lock(agent, key))
            except ApiError:
                if refuse_in_flight:
                    raise
                busy.add(key)
        with transaction.atomic():
            ledger = Ledger(agent, keys, busy)
            yield ledger
            ledger.save()


def run_once(
    agent: Agent, key: str, body, create: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """(status, body, replayed). `create` runs at most once per (agent, key, 24 h)."""
    with held(agent, [key], refuse_in_flight=True) as ledger:
        return ledger.run(key, body, create)


def respond(agent: Agent, key: str | None, body, act: Callable[[], tuple[int, dict]], *, space=""):
    """The API answer of an action that an Idempotency-Key makes run once: `act` runs when
    there is no key, or the first time for this key (in this `space`, so one key used on two
    endpoints never replays one endpoint's answer on the other); a repeat gets the stored
    answer with status 200 and `Idempotent-Replayed: true`."""
    from rest_framework.response import Response

    if key is None:
        code, answer = act()
        return Response(answer, status=code)
    code, answer, replayed = run_once(agent, space + check_key(key), body, act)
    if replayed:
        return Response(answer, status=200, headers={"Idempotent-Replayed": "true"})
    return Response(answer, status=code)
