"""The audit log: record() appends a hash-chained event; verify_chain() proves the chain.

Linearity: events are numbered and chained under the single chain-head row's lock, held until
commit, so they are in commit order with no gaps. On PostgreSQL record() only queues a write's
events inside the caller's transaction, and a deferred trigger chains them at COMMIT (migration
0015): the head is held for that trigger and the commit alone, so writers serialize only there.
Until then an event has no seq or hash, and the audit table shows it once its transaction has
committed, as it shows nothing uncommitted. On SQLite record() chains at once (_append): the
IMMEDIATE transactions already serialize every writer.

Events never copy a case's context or metadata, only their SHA-256, so redacting a case leaves
the chain valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from escalation.locks import lock_row
from escalation.models.audit import ActorKind, AuditChainHead, AuditEvent, AuditVerification

checkpoint_log = logging.getLogger("handoff.audit")

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did it: a person, an agent, or the system (sweeps, routing)."""

    kind: str
    user: Any = None
    agent: Any = None

    @classmethod
    def for_user(cls, user) -> Actor:
        return cls(kind=ActorKind.USER, user=user)

    @classmethod
    def for_agent(cls, agent) -> Actor:
        return cls(kind=ActorKind.AGENT, agent=agent)

    @classmethod
    def system(cls) -> Actor:
        return cls(kind=ActorKind.SYSTEM)

    @property
    def name(self) -> str:
        if self.kind == ActorKind.USER:
            return self.user.get_username()
        if self.kind == ActorKind.AGENT:
            return self.agent.name
        return "system"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    """SHA-256 of a JSON value in canonical form (what audit events keep instead of content)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _hash_parts(
    *,
    created_at: datetime,
    actor_kind: str,
    actor_user_id: int | None,
    actor_agent_id: int | None,
    actor_name: str,
    verb: str,
    escalation_id: Any,
    queue_id: int | None,
    data: Any,
) -> tuple[str, str, str]:
    """The canonical JSON an event's hash is taken of, but for its place in the chain, in
    three parts: the text is parts[0] + prev_hash + parts[1] + str(seq) + parts[2]. (Keys
    sorted: actor, at, case, data, prev, queue, seq, verb.) PostgreSQL chains a write's events
    from these parts in its commit-time trigger (_pend_in_sql)."""
    before = canonical_json(
        {
            "actor": [actor_kind, actor_user_id, actor_agent_id, actor_name],
            "at": created_at.astimezone(UTC).isoformat(),
            "case": str(escalation_id) if escalation_id else None,
            "data": data,
        }
    )
    return (
        before[:-1] + ',"prev":"',
        '","queue":' + canonical_json(queue_id) + ',"seq":',
        ',"verb":' + canonical_json(verb) + "}",
    )


def _parts_of(event: AuditEvent) -> tuple[str, str, str]:
    return _hash_parts(
        created_at=event.created_at,
        actor_kind=event.actor_kind,
        actor_user_id=event.actor_user_id,
        actor_agent_id=event.actor_agent_id,
        actor_name=event.actor_name,
        verb=event.verb,
        escalation_id=event.escalation_id,
        queue_id=event.queue_id,
        data=event.data,
    )


def _chained_hash(parts: tuple[str, str, str], seq: int, prev_hash: str) -> str:
    body = parts[0] + prev_hash + parts[1] + str(seq) + parts[2]
    return hashlib.sha256(body.encode()).hexdigest()


def hash_of(event: AuditEvent) -> str:
    return _chained_hash(_parts_of(event), event.seq, event.prev_hash)


def record(
    *,
    actor: Actor,
    verb: str,
    case=None,
    queue=None,
    data: dict | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it records; on
    PostgreSQL the event gets its seq and hash when that transaction commits."""
    return record_many(actor=actor, verb=verb, subjects=[(case, queue, data)], now=now)[0]


def record_many(
    *,
    actor: Actor,
    verb: str,
    subjects: Sequence[tuple[Any, Any, dict | None]],
    now: datetime | None = None,
) -> list[AuditEvent]:
    """Append one event per (case, queue, data), in order, in one INSERT and one chaining (a
    batch create records a hundred events for the cost of about one)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record() must run inside the transaction of its change")
    now = now or timezone.now()
    events = [
        AuditEvent(
            created_at=now,
            actor_kind=actor.kind,
            actor_user=actor.user,
            actor_agent=actor.agent,
            actor_name=actor.name[:150],
            verb=verb,
            escalation=case,
            queue=case.queue if queue is None and case is not None else queue,
            data=json.loads(canonical_json(data or {})),  # store exactly what was hashed
        )
        for case, queue, data in subjects
    ]
    if not events:
        return events
    if transaction.get_connection().vendor == "postgresql":
        _pend_in_sql(events)  # chained at commit: seq, prev_hash and hash stay unset here
    elif not _append(events):
        # First event ever: create the head row; a concurrent creator loses on the primary key
        # and waits for the head below.
        AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS_HASH})
        _append(events)
    return events


def _append(events: list[AuditEvent]) -> bool:
    """Chain and insert the events under the head's lock; False when there is no head yet."""
    # A plain FOR UPDATE: nothing points at the head row.
    head = lock_row(AuditChainHead, 1, ("seq", "hash"), no_key=False)
    if head is None:
        return False
    seq, prev_hash = head
    for event in events:
        event.seq, event.prev_hash = seq + 1, prev_hash
        event.hash = hash_of(event)
        seq, prev_hash = event.seq, event.hash
    AuditEvent.objects.bulk_create(events)
    AuditChainHead.objects.filter(pk=1).update(seq=seq, hash=prev_hash)
    return True


# PostgreSQL: the events wait in escalation_auditpending, which takes no lock, and a deferred
# trigger chains them at COMMIT (migration 0015): the head is locked only for that trigger and
# the commit, inside PostgreSQL, not across the rest of the caller's transaction and its
# round trips. The trigger numbers and hashes them from the parts _hash_parts prepared (sha256
# around the previous hash and the number); verify_chain recomputes the hashes in Python.
# The arrays go in binary (%b): escaping each text into an array literal cost more than the rest.
_PEND_SQL = """
INSERT INTO escalation_auditpending (created_at, actor_kind, actor_user_id, actor_agent_id,
    actor_name, verb, escalation_id, queue_id, data, before_prev, before_seq, after_seq)
SELECT %(created_at)s, %(actor_kind)s, %(actor_user_id)s, %(actor_agent_id)s, %(actor_name)s,
       %(verb)s, item.case_id, item.queue_id, item.data, item.before_prev, item.before_seq,
       item.after_seq
FROM unnest(%(case_id)b::uuid[], %(queue_id)b::int[], %(data)b::text[],
            %(before_prev)b::text[], %(before_seq)b::text[], %(after_seq)b::text[])
    WITH ORDINALITY AS item(case_id, queue_id, data, before_prev, before_seq, after_seq, n)
ORDER BY item.n
"""


def _pend_in_sql(events: list[AuditEvent]) -> None:
    """PostgreSQL: queue the events for the commit-time seal, in order, in one statement."""
    first = events[0]  # one actor, verb and time for all (record_many)
    parts = [_parts_of(event) for event in events]
    params = {
        "before_prev": [p[0] for p in parts],
        "before_seq": [p[1] for p in parts],
        "after_seq": [p[2] for p in parts],
        "case_id": [event.escalation_id for event in events],
        "queue_id": [event.queue_id for event in events],
        "data": [canonical_json(event.data) for event in events],
        "created_at": first.created_at,
        "actor_kind": first.actor_kind,
        "actor_user_id": first.actor_user_id,
        "actor_agent_id": first.actor_agent_id,
        "actor_name": first.actor_name,
        "verb": first.verb,
    }
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(_PEND_SQL, params)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


def _bad(checked: int, seq: int | None, problem: str) -> ChainReport:
    return ChainReport(False, checked, 0, "", first_bad_seq=seq, problem=problem)


def verify_chain(checkpoint: tuple[int, str] | None = None, batch: int = 2000) -> ChainReport:
    """Walk the whole chain in sequence order, recomputing every hash.

    Catches an edited event (its hash no longer matches), a deleted or reordered one (a gap in
    the sequence, or a broken prev link), a truncated tail (the head row names a later event),
    and — against a checkpoint copied from the log — a truncated-and-rehead or rewritten chain.
    """
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    checkpoint_seen = checkpoint is None
    last_seq = 0
    while True:
        events = list(AuditEvent.objects.filter(seq__gte=expected_seq).order_by("seq")[:batch])
        if not events:
            break
        for event in events:
            if event.seq != expected_seq:
                return _bad(checked, expected_seq, f"event {expected_seq} is missing")
            if event.prev_hash != prev_hash:
                return _bad(
                    checked, event.seq, f"event {event.seq} does not follow its predecessor"
                )
            if hash_of(event) != event.hash:
                return _bad(checked, event.seq, f"event {event.seq} was altered (hash mismatch)")
            if checkpoint is not None and event.seq == checkpoint[0]:
                if event.hash != checkpoint[1]:
                    return _bad(
                        checked, event.seq, f"event {event.seq} does not match the checkpoint hash"
                    )
                checkpoint_seen = True
            prev_hash, last_seq = event.hash, event.seq
            expected_seq += 1
            checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    if head_seq != last_seq or head_hash != prev_hash:
        return _bad(
            checked,
            last_seq + 1,
            f"the chain ends at event {last_seq} but its head records event {head_seq}",
        )
    if not checkpoint_seen:
        return _bad(
            checked,
            checkpoint[0],
            f"checkpoint event {checkpoint[0]} is missing (chain ends at {last_seq})",
        )
    return ChainReport(True, checked, last_seq, prev_hash)


def parse_checkpoint(text: str) -> tuple[int, str]:
    """'SEQ:HASH' -> (seq, hash); ValueError with a one-line reason."""
    seq_text, sep, hash_text = text.partition(":")
    if not sep or not seq_text.isdigit() or int(seq_text) < 1:
        raise ValueError("checkpoint must look like SEQ:HASH, e.g. 1042:3f2a…")
    hash_text = hash_text.strip().lower()
    if len(hash_text) != 64 or any(c not in "0123456789abcdef" for c in hash_text):
        raise ValueError("checkpoint hash must be 64 hexadecimal characters")
    return int(seq_text), hash_text


def log_checkpoint() -> tuple[int, str]:
    """Write the chain head to the application log, so a copy lives outside the database;
    `verify_audit_chain --checkpoint SEQ:HASH` later proves the chain still matches it."""
    head = AuditChainHead.objects.filter(pk=1).first()
    seq, digest = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    checkpoint_log.info(
        canonical_json(
            {
                "event": "audit.checkpoint",
                "seq": seq,
                "hash": digest,
                "checkpoint": f"{seq}:{digest}",
                "at": timezone.now().astimezone(UTC).isoformat(),
            }
        )
    )
    return seq, digest


def request_verification(*, user) -> AuditVerification:
    """Record that someone asked for a verification, and ring the worker after commit: the walk
    reads every event, so it runs in Celery, never in the request."""
    from escalation import outbox
    from escalation.tasks import verify_audit_chain_task

    with transaction.atomic():
        verification = AuditVerification.objects.create(
            started_at=timezone.now(), requested_by=user
        )
        transaction.on_commit(lambda: outbox.ring(verify_audit_chain_task, verification.pk))
    return verification


def run_verification(verification_id: int) -> bool | None:
    """Walk the chain for one requested verification and store the outcome. A row already
    finished (a task delivered twice) is left alone; the conditional UPDATE keeps two
    concurrent runs from both writing."""
    pending = AuditVerification.objects.filter(pk=verification_id, finished_at__isnull=True)
    if not pending.exists():
        return None
    report = verify_chain()
    pending.update(
        finished_at=timezone.now(),
        ok=report.ok,
        checked=report.checked,
        head_seq=report.head_seq,
        first_bad_seq=report.first_bad_seq,
        problem=report.problem,
    )
    return report.ok
