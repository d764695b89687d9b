"""THE case state machine: the only code that changes a case's status.

Every function takes keyword-only arguments and an `actor`, locks the case row, checks the move
(raising TransitionError and writing nothing when it is illegal), writes the change and its
audit event in one transaction, and records follow-up work in the outbox, which reaches Celery
only after commit.

    open ──claim──▶ claimed ──resolve──▶ resolved
     ▲  ◀─release / lease expiry─┘
     ├─ transfer (open|claimed ▶ open in another queue)
     └─ cancel / expire (open|claimed ▶ cancelled / expired)
"""

from __future__ import annotations

import functools
import uuid
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts import permissions
from escalation import (
    audit,
    cap,
    delivery,
    labels,
    outbox,
    queries,
    rollups,
    routing,
    rows,
    sla,
    wakeups,
)
from escalation.audit import Actor, content_hash
from escalation.locks import lock_clause
from escalation.models import (
    Agent,
    ContextUpdate,
    Decision,
    Escalation,
    LabelSource,
    Priority,
    Queue,
    Resolution,
    Scope,
    Status,
    Transfer,
)
from escalation.models.audit import ActorKind
from escalation.models.cases import ACTIVE_STATUSES, PRIORITY_RANK

REDACTED = {"redacted": True}
# One step up when a queue's policy raises the priority of a breached case.
RAISED_PRIORITY = {
    Priority.LOW: Priority.NORMAL,
    Priority.NORMAL: Priority.HIGH,
    Priority.HIGH: Priority.URGENT,
    Priority.URGENT: Priority.URGENT,
}


class TransitionError(Exception):
    """The one domain error: the move is illegal, invalid, or not this actor's to make.

    `code` is stable for programs (API error codes): illegal_transition, lease_expired,
    not_claim_holder, invalid, forbidden, not_found, open_case_cap.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "illegal_transition",
        fields: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.fields = fields or {}


# --- helpers ---------------------------------------------------------------------------------


def _lock(case_id) -> Escalation:
    # The lock is taken on the case row alone, then the case is read with its queue and agent.
    # Locked in one statement with the join, a waiter whose case was meanwhile moved to another
    # queue (a transfer, routing) has PostgreSQL re-check the new row against the old queue
    # row, drop it, and answer "no such case" (tests/races/test_one_case.py).
    # Plain SQL (escalation.rows): every transition starts here.
    try:
        key = rows.key(Escalation, case_id)
    except ValueError:
        raise TransitionError("no such case", code="not_found") from None
    case_sql, related_sql = _lock_sql(connection.vendor)
    found = rows.fetch(case_sql, [key], Escalation)
    if found is None:
        raise TransitionError("no such case", code="not_found")
    (case,) = found
    case.queue, case.agent = rows.fetch(related_sql, [case.queue_id, case.agent_id], Queue, Agent)
    return case


@functools.cache
def _lock_sql(vendor: str) -> tuple[str, str]:
    """_lock's two statements: lock and read the case; read its queue and agent."""
    lock_case = (
        f"SELECT {rows.columns(Escalation, 'c')} FROM {rows.table(Escalation)} c"  # noqa: S608
        f" WHERE c.id = %s{lock_clause()}"
    )
    queue_and_agent = (
        f"SELECT {rows.columns(Queue, 'q')}, {rows.columns(Agent, 'a')}"  # noqa: S608
        f" FROM {rows.table(Queue)} q, {rows.table(Agent)} a WHERE q.id = %s AND a.id = %s"
    )
    return lock_case, queue_and_agent


def _status_word(case: Escalation) -> str:
    return case.get_status_display().lower()


def _require_active(case: Escalation, action: str) -> None:
    if case.status not in ACTIVE_STATUSES:
        raise TransitionError(f"cannot {action} a case that is {_status_word(case)}")


def _require_can_work(actor: Actor, case: Escalation) -> None:
    if actor.kind == ActorKind.USER and not permissions.can_work_queue(actor.user, case.queue_id):
        raise TransitionError("this case is not in one of your queues", code="forbidden")


def _is_manager_of(actor: Actor, case: Escalation) -> bool:
    return actor.kind == ActorKind.USER and permissions.can_manage_queue(actor.user, case.queue_id)


def _require_own_case(actor: Actor, case: Escalation) -> None:
    if actor.kind == ActorKind.AGENT and case.agent_id != actor.agent.pk:
        raise TransitionError("no such case", code="not_found")


def _is_holder(actor: Actor, case: Escalation, claim_token) -> bool:
    return (
        actor.kind == ActorKind.USER
        and case.status == Status.CLAIMED
        and case.claimed_by_id == actor.user.pk
        and claim_token is not None
        and str(case.claim_token) == str(claim_token)
    )


def _require_live_claim(actor: Actor, case: Escalation, claim_token, now: datetime) -> None:
    """The claim fence: only the current holder, with the current token, before the lease ends."""
    if case.status != Status.CLAIMED:
        raise TransitionError(
            f"the case is {_status_word(case)}, not claimed by you",
            code="not_claim_holder" if case.status == Status.OPEN else "illegal_transition",
        )
    if not _is_holder(actor, case, claim_token):
        raise TransitionError("you do not hold the claim on this case", code="not_claim_holder")
    if case.lease_expires_at <= now:
        raise TransitionError(
            f"your claim ran out at {case.lease_expires_at:%H:%M:%S} UTC; claim the case again",
            code="lease_expired",
        )


def _clear_claim(case: Escalation) -> None:
    case.claimed_by = None
    case.claimed_at = None
    case.claim_token = None
    case.lease_expires_at = None


def _run_open_clock(case: Escalation) -> None:
    case.next_due_at, case.next_risk_at = case.claim_due_at, case.claim_risk_at


def _run_claimed_clock(case: Escalation) -> None:
    case.next_due_at, case.next_risk_at = case.resolve_due_at, case.resolve_risk_at


def _restart_clock(case: Escalation) -> None:
    if case.status == Status.OPEN:
        _run_open_clock(case)
    elif case.status == Status.CLAIMED:
        _run_claimed_clock(case)


def _stop_clock(case: Escalation) -> None:
    case.next_due_at = case.next_risk_at = None


def _set_due_times(case: Escalation, queue: Queue, entered_at: datetime) -> None:
    due = sla.due_times(entered_at, case.priority, queue.sla_policy, queue.get_calendar())
    case.claim_due_at, case.resolve_due_at = due.claim_due_at, due.resolve_due_at
    case.claim_risk_at, case.resolve_risk_at = due.claim_risk_at, due.resolve_risk_at


def _enter_queue(case: Escalation, queue: Queue, now: datetime) -> None:
    """The case becomes open in `queue` with due times from its policy; breach history and
    expiry stay as they are."""
    case.queue = queue
    case.entered_queue_at = now
    case.status = Status.OPEN
    _clear_claim(case)
    _set_due_times(case, queue, now)
    _run_open_clock(case)


def _close(case: Escalation, status: str, now: datetime) -> None:
    case_id = case.pk
    # Long-polls waiting on this case wake up once the terminal state is committed.
    transaction.on_commit(lambda: wakeups.publish(case_id))
    case.status = status
    case.closed_at = now
    case.claim_token = None
    case.lease_expires_at = None
    _stop_clock(case)


def _save(case: Escalation, now: datetime, fields: list[str] | None = None) -> None:
    """Write the case back: every column, or only `fields` (and updated_at). The hot
    transitions name theirs, so a claim or a decision does not re-send the 2 KB context."""
    case.updated_at = now
    if fields is None:
        case.save()
    else:
        rows.update(case, list(dict.fromkeys([*fields, "updated_at"])))


def _check_priority(priority: str) -> None:
    if priority not in Priority.values:
        raise TransitionError(
            "invalid priority",
            code="invalid",
            fields={"priority": f"must be one of {', '.join(Priority.values)}"},
        )


# --- transitions -----------------------------------------------------------------------------


def create(
    *, actor: Actor, agent, now: datetime | None = None, checked_queues=(), **fields: Any
) -> Escalation:
    """A new open case (`fields` as Intake.add, `checked_queues` as Intake); routing runs
    after commit (the case is visible before)."""
    # Inside a caller's transaction (the API's idempotency ledger) no savepoint, which costs
    # two round trips: add() refuses before it writes, and a failed save() fails the caller's
    # transaction as a whole. atomic(savepoint=False) would instead mark the caller's
    # transaction for rollback on a refusal too.
    in_transaction = transaction.get_connection().in_atomic_block
    with nullcontext() if in_transaction else transaction.atomic():
        intake = Intake(actor=actor, agent=agent, now=now, checked_queues=checked_queues)
        case = intake.add(**fields)
        intake.save()
    return case


class Intake:
    """New cases of one agent, checked one by one and written together.

    Use it inside one transaction, for at most `expected` cases. add() decides each case at
    once, in order: the priority, the queue, and the open-case cap (escalation.cap). The first
    add takes room for all `expected` cases in one share of the cap; where there is none, it
    locks the agent and its shares and counts the agent's open cases, and each add then counts
    the cases added before it. Nothing else is written until save(), which inserts the cases,
    their routing jobs and their `escalation.created` events in three statements (a fourth
    spreads a count over the shares). A refused add() raises TransitionError and leaves the
    others as they were, so a batch needs no savepoint per case; room taken for a refused case
    stays taken, which is safe (the bounds only ever overcount).
    """

    def __init__(
        self,
        *,
        actor: Actor,
        agent,
        now: datetime | None = None,
        checked_queues=(),
        expected: int = 1,
    ) -> None:
        """`checked_queues`: queues the caller has just read from agent.allowed_queues(), so
        the agent may post to them without asking the database again."""
        self.actor = actor
        self.agent = agent
        self.now = now or timezone.now()
        self.expected = expected
        self.cases: list[Escalation] = []
        self._room: int | None = None  # cases that may still be added; None: not asked yet
        # The agent's open cases, counting those added here: known on the exclusive way only.
        self._open_cases: int | None = None
        self._may_post: dict[int, bool] = {}
        self._saved = False
        for queue in checked_queues:
            self.allow(queue)

    def allow(self, queue: Queue) -> None:
        """The caller has just read `queue` from agent.allowed_queues(): add() need not ask."""
        self._may_post[queue.pk] = True

    def add(
        self,
        *,
        queue: Queue,
        summary: str,
        confidence: float,
        context: dict,
        priority: str = Priority.NORMAL,
        reason: str = "",
        proposed_action: dict | None = None,
        external_id: str = "",
        metadata: dict | None = None,
        callback_url: str = "",
        agent_version: str = "",
        label_source: str = LabelSource.ESCALATED,
        scope=None,
    ) -> Escalation:
        agent, now = self.agent, self.now
        _check_priority(priority)
        if queue.pk not in self._may_post:
            self._may_post[queue.pk] = queue.is_active and agent.may_post_to(queue)
        if not self._may_post[queue.pk]:
            raise TransitionError(
                f"agent {agent.name} may not post to queue {queue.slug}", code="forbidden"
            )
        if self._room is None:
            # An UPDATE that waited for a share's lock and then found no room keeps that lock;
            # the exclusive way must not hold it (cap's docstring): roll back to before it.
            before_room = transaction.savepoint()
            if cap.take_room(agent, self.expected):
                self._room = self.expected
            else:
                if before_room is not None:
                    transaction.savepoint_rollback(before_room)
                self._room = 0
                self._open_cases = cap.lock_and_count(agent)
        if self._open_cases is not None:
            if self._open_cases >= agent.max_open_cases:
                raise TransitionError(
                    f"agent {agent.name} already has {self._open_cases} open cases "
                    f"(limit {agent.max_open_cases})",
                    code="open_case_cap",
                )
        elif self._room > 0:
            self._room -= 1
        else:
            # Taking more room now, with the room already held, could deadlock (cap's docstring).
            raise RuntimeError(f"an Intake adds at most {self.expected} cases (expected=)")
        case = Escalation(
            id=uuid.uuid4(),
            agent=agent,
            summary=summary,
            confidence=confidence,
            priority=priority,
            priority_rank=PRIORITY_RANK[priority],
            reason=reason,
            context=context,
            proposed_action=proposed_action,
            external_id=external_id,
            metadata=metadata or {},
            callback_url=callback_url,
            agent_version=agent_version,
            label_source=label_source,
            scope=scope,
            created_at=now,
            updated_at=now,
            expires_at=now + timedelta(seconds=queue.expire_after_seconds),
        )
        _enter_queue(case, queue, now)
        if self._open_cases is not None:
            self._open_cases += 1
        self.cases.append(case)
        return case

    def save(self) -> list[Escalation]:
        """Write the added cases (once) inside the caller's transaction."""
        if self._saved:
            raise RuntimeError("an Intake is saved once")
        self._saved = True
        if not self.cases:
            return []
        rows.insert(self.cases)
        if self._open_cases is not None:
            cap.spread(self.agent, self._open_cases)
        outbox.enqueue_many("route", cases=self.cases)
        audit.record_many(
            actor=self.actor,
            verb="escalation.created",
            now=self.now,
            subjects=[
                (
                    case,
                    None,
                    {
                        "queue": case.queue.slug,
                        "priority": case.priority,
                        "confidence": case.confidence,
                        "reason": case.reason,
                        "external_id": case.external_id,
                        "context_sha256": content_hash(case.context),
                        "metadata_sha256": content_hash(case.metadata),
                    },
                )
                for case in self.cases
            ],
        )
        return self.cases


def route(*, case_id, now: datetime | None = None) -> Escalation:
    """Apply the posted queue's routing rules once (a second run changes nothing)."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock(case_id)
        if case.routed_at is not None:
            return case
        changes: dict[str, Any] = {}
        matched: list[int] = []
        ignored = ""
        if case.status in ACTIVE_STATUSES:
            view = {
                "priority": case.priority,
                "confidence": case.confidence,
                "reason": case.reason,
                "summary": case.summary,
                "external_id": case.external_id,
                "agent": case.agent.name,
                "agent_version": case.agent_version,
                "queue": case.queue.slug,
                "metadata": case.metadata,
            }
            changes, matched = routing.evaluate(case.queue.routing_rules or [], view)
        from_queue = case.queue
        if "priority" in changes and changes["priority"] != case.priority:
            case.priority = changes["priority"]
            case.priority_rank = PRIORITY_RANK[case.priority]
            # Routing happens as the case arrives: its targets follow the routed priority.
            _set_due_times(case, case.queue, case.entered_queue_at)
            _restart_clock(case)
        target_slug = changes.get("queue")
        if target_slug and target_slug != from_queue.slug:
            target = Queue.objects.filter(slug=target_slug, is_active=True).first()
            if target is None:
                ignored = f"queue {target_slug} does not exist or is inactive"
            else:
                Transfer.objects.create(
                    escalation=case,
                    from_queue=from_queue,
                    to_queue=target,
                    reason="routing rule",
                    created_at=now,
                )
                _enter_queue(case, target, now)
        case.routed_at = now
        _save(case, now)
        audit.record(
            actor=Actor.system(),
            verb="escalation.routed",
            case=case,
            now=now,
            data={
                "rules_matched": matched,
                "changes": changes,
                "ignored": ignored,
                "from_queue": from_queue.slug,
                "queue": case.queue.slug,
                "priority": case.priority,
            },
        )
        if case.priority == Priority.URGENT and case.status == Status.OPEN:
            outbox.enqueue("notify_urgent", case=case)
    return case


def record_breaches(*, case_ids, now: datetime | None = None) -> int:
    """Flag and audit each target these cases have missed and not yet recorded; returns how
    many were recorded. One transaction for them all, one lock of the chain head and two
    INSERTs of events (a sweep of 500 breaches costs about what one did). Cases another
    transaction holds are skipped, not waited for: the next sweep takes them, and a claim or
    decision holding one records its missed targets itself. Under the row locks, with the
    flags re-checked, a racing sweeper or a second run records nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        # Locked alone, then read with the queue (see _lock); in key order, so two sweepers
        # never wait on each other in a cycle.
        locked = Escalation.objects.select_for_update(no_key=True, skip_locked=True).filter(
            pk__in=list(case_ids)
        )
        ids = list(locked.order_by("pk").values_list("pk", flat=True))
        flagged = []
        events: dict[str, list] = {"claim": [], "resolve": []}
        for case in Escalation.objects.select_related("queue").filter(pk__in=ids):
            missed = _flag_missed_targets(case, now)
            if missed:
                case.updated_at = now
                flagged.append(case)
            for kind, data in missed:
                events[kind].append((case, None, data))
        Escalation.objects.bulk_update(flagged, BREACH_FIELDS)
        for kind, subjects in events.items():
            if subjects:
                audit.record_many(
                    actor=Actor.system(), verb=f"sla.{kind}_breached", subjects=subjects, now=now
                )
    return sum(len(subjects) for subjects in events.values())


# What _flag_missed_targets may change on a case.
BREACH_FIELDS = [
    "claim_breached_at",
    "resolve_breached_at",
    "priority",
    "priority_rank",
    "updated_at",
]
# What a claim writes, and a decision: each after the breach flags _record_missed_targets may
# set first.
CLOCK_FIELDS = ["status", "claim_token", "lease_expires_at", "next_due_at", "next_risk_at"]
CLAIM_FIELDS = [*BREACH_FIELDS, *CLOCK_FIELDS, "claimed_by", "claimed_at", "first_claimed_at"]
CLOSE_FIELDS = [*BREACH_FIELDS, *CLOCK_FIELDS, "closed_at"]


def _record_missed_targets(case: Escalation, now: datetime) -> list[str]:
    """Flag and audit the case's missed targets (inside a transition of the locked case)."""
    missed = _flag_missed_targets(case, now)
    for kind, data in missed:
        audit.record(
            actor=Actor.system(), verb=f"sla.{kind}_breached", case=case, now=now, data=data
        )
    return [kind for kind, _ in missed]


def _flag_missed_targets(case: Escalation, now: datetime) -> list[tuple[str, dict]]:
    """Set the flag of each target the case has missed and not yet recorded ('claim',
    'resolve'), raise its priority if its queue says so; (kind, audit data) for each."""
    kinds = []
    if (
        case.status == Status.OPEN
        and case.claim_breached_at is None
        and case.claim_due_at is not None
        and case.claim_due_at <= now
    ):
        case.claim_breached_at = now
        kinds.append("claim")
    if (
        case.status in ACTIVE_STATUSES
        and case.resolve_breached_at is None
        and case.resolve_due_at is not None
        and case.resolve_due_at <= now
    ):
        case.resolve_breached_at = now
        kinds.append("resolve")
    raised_from = None
    if kinds and case.queue.raise_priority_on_breach and case.priority != Priority.URGENT:
        # A raise changes the order, not the due times.
        raised_from = case.priority
        case.priority = RAISED_PRIORITY[case.priority]
        case.priority_rank = PRIORITY_RANK[case.priority]
    missed = []
    for kind in kinds:
        due = case.claim_due_at if kind == "claim" else case.resolve_due_at
        data = {
            "due_at": due.isoformat(),
            "status": case.status,
            "priority": case.priority,
            "raised_from": raised_from,
        }
        missed.append((kind, data))
        raised_from = None  # recorded once
    return missed


def _take_claim(case: Escalation, actor: Actor, now: datetime) -> Escalation:
    if case.status == Status.CLAIMED and case.lease_expires_at <= now:
        _return_expired_lease(case, now)
    # A target missed before any sweep saw it is still recorded, before the claim.
    _record_missed_targets(case, now)
    if case.status != Status.OPEN:
        if case.status == Status.CLAIMED:
            holder = case.claimed_by.get_username()
            raise TransitionError(f"the case is already claimed by {holder}")
        raise TransitionError(f"cannot claim a case that is {_status_word(case)}")
    case.status = Status.CLAIMED
    case.claimed_by = actor.user
    case.claimed_at = now
    if case.first_claimed_at is None:
        case.first_claimed_at = now
    case.claim_token = uuid.uuid4()
    case.lease_expires_at = now + timedelta(seconds=case.queue.lease_seconds)
    _run_claimed_clock(case)
    _save(case, now, CLAIM_FIELDS)
    audit.record(
        actor=actor,
        verb="escalation.claimed",
        case=case,
        now=now,
        data={"lease_expires_at": case.lease_expires_at.isoformat()},
    )
    return case


def claim(*, actor: Actor, case_id, now: datetime | None = None) -> Escalation:
    """Claim one open case; the returned case carries the claim token the holder must present."""
    now = now or timezone.now()
    if actor.kind != ActorKind.USER:
        raise TransitionError("only people claim cases", code="forbidden")
    with transaction.atomic():
        case = _lock(case_id)
        _require_can_work(actor, case)
        return _take_claim(case, actor, now)


def claim_next(
    *, actor: Actor, queue_ids: list[int] | None = None, now: datetime | None = None
) -> Escalation | None:
    """Claim the most urgent claimable case in the person's queues, or None.

    SKIP LOCKED lets concurrent reviewers each take a different case instead of queueing on
    the same row; the row lock makes it impossible for two to hold one case.
    """
    now = now or timezone.now()
    if actor.kind != ActorKind.USER:
        raise TransitionError("only people claim cases", code="forbidden")
    allowed = permissions.visible_queue_ids(actor.user)
    if queue_ids is not None:
        wanted = {int(queue_id) for queue_id in queue_ids}
        allowed = [queue_id for queue_id in allowed if queue_id in wanted]
    queue_ids = allowed
    if not queue_ids:
        return None
    candidates = queries.next_case_candidates(queue_ids, now)
    if candidates is None:
        tries = [[]]
    elif candidates:
        # The lock re-checks that a candidate is still claimable; if every one was taken
        # meanwhile, all claimable cases are looked at.
        tries = [candidates, []]
    else:
        return None  # nothing claimable in any of the queues
    with transaction.atomic():
        for among in tries:
            candidate = _lock_most_urgent(queue_ids, now, among)
            if candidate is not None:
                return _take_claim(candidate, actor, now)
    return None


def _lock_most_urgent(queue_ids: list[int], now: datetime, among: list) -> Escalation | None:
    """The most urgent claimable case of the queues (of `among`, when given), locked, with its
    queue and agent; None when every one is taken. Plain SQL: Next case runs it on each press."""
    sql = queries.most_urgent_claimable_sql(connection.vendor, len(queue_ids), len(among))
    keys = [rows.key(Escalation, pk) for pk in among]
    found = rows.fetch(sql, [now, *queue_ids, *keys], Escalation)
    if found is None:
        return None
    (case,) = found
    _, related_sql = _lock_sql(connection.vendor)
    case.queue, case.agent = rows.fetch(related_sql, [case.queue_id, case.agent_id], Queue, Agent)
    return case


def renew_lease(*, actor: Actor, case_id, claim_token, now: datetime | None = None) -> Escalation:
    """Heartbeat from an open case page: extends a live lease; never revives an expired one.
    Not audited: it changes no state, and would flood the log."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock(case_id)
        _require_live_claim(actor, case, claim_token, now)
        case.lease_expires_at = now + timedelta(seconds=case.queue.lease_seconds)
        case.save(update_fields=["lease_expires_at"])
    return case


def release(*, actor: Actor, case_id, claim_token=None, now: datetime | None = None) -> Escalation:
    """Give a claimed case back (due times kept). The holder needs a live claim; a manager of
    the queue may release anyone's."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock(case_id)
        _require_can_work(actor, case)
        by_manager = (
            not _is_holder(actor, case, claim_token)
            and case.status == Status.CLAIMED
            and _is_manager_of(actor, case)
        )
        if not by_manager:
            _require_live_claim(actor, case, claim_token, now)
        holder = case.claimed_by.get_username()
        case.status = Status.OPEN
        _clear_claim(case)
        _run_open_clock(case)
        _save(case, now)
        audit.record(
            actor=actor,
            verb="escalation.released",
            case=case,
            now=now,
            data={"holder": holder, "by_manager": by_manager},
        )
    return case


def expire_lease(*, case_id, now: datetime | None = None) -> Escalation | None:
    """Return a claimed case whose lease ran out to open; None if there is nothing to do."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock(case_id)
        if case.status != Status.CLAIMED or case.lease_expires_at > now:
            return None
        return _return_expired_lease(case, now)


def _return_expired_lease(case: Escalation, now: datetime) -> Escalation:
    holder = case.claimed_by.get_username()
    expired_at = case.lease_expires_at
    case.status = Status.OPEN
    _clear_claim(case)
    _run_open_clock(case)
    _save(case, now)
    audit.record(
        actor=Actor.system(),
        verb="escalation.lease_expired",
        case=case,
        now=now,
        data={"holder": holder, "lease_expired_at": expired_at.isoformat()},
    )
    return case


def resolve(
    *,
    actor: Actor,
    case_id,
    claim_token,
    decision: str,
    final_action: dict | None = None,
    labels: dict | None = None,
    note: str = "",
    critical: bool = False,
    now: datetime | None = None,
) -> Escalation:
    """Decide a claimed case: approve, modify (with final_action) or reject, with labels.

    A QA case's decision is the verdict on the action the agent already took (approve: it was
    right; modify: it should have been different, final_action optional; reject: it should
    not have acted), and `critical` may flag it; the scope's monitors run on it at once. A
    shadow case is decided blind: the reviewer's own action (modify) or reject; the verdict
    on the proposal comes after (record_verdict)."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock(case_id)
        qa = case.label_source == LabelSource.QA
        scope = None
        if case.scope_id is not None:  # locked before the chain head (escalation.autonomy)
            scope = Scope.objects.select_for_update(no_key=True).get(pk=case.scope_id)
        _require_can_work(actor, case)
        _require_live_claim(actor, case, claim_token, now)
        labels = labels or {}
        errors = _decision_errors(case, decision, final_action, labels)
        if critical and not qa:
            errors["critical"] = "only a QA sample can be marked critical"
        if errors:
            raise TransitionError("the decision is not valid", code="invalid", fields=errors)
        _record_missed_targets(case, now)
        if decision == Decision.APPROVE:
            final_action = case.proposed_action
        elif decision == Decision.REJECT:
            final_action = None
        Resolution.objects.create(
            escalation=case,
            decision=decision,
            final_action=final_action,
            labels=labels,
            note=note,
            resolved_by=actor.user,
            resolved_at=now,
            verdict=decision if qa else "",
            verdict_at=now if qa else None,
            critical=critical,
            epoch=scope.epoch if scope else 0,
        )
        _close(case, Status.RESOLVED, now)
        _save(case, now, CLOSE_FIELDS)
        delivery.schedule(case, now)
        audit.record(
            actor=actor,
            verb="escalation.resolved",
            case=case,
            now=now,
            data={
                "decision": decision,
                "labels": labels,
                "note": note,
                "final_action_sha256": content_hash(final_action),
                **({"critical": critical} if qa else {}),
            },
        )
        # A shadow case's label is its verdict, counted when it is given.
        if case.label_source != LabelSource.SHADOW:
            rollups.count_resolution(case, decision, epoch=scope.epoch if scope else 0)
        if qa:
            from escalation import autonomy  # it builds on this module

            autonomy.judge_qa(case, critical=critical, now=now)
    return case


def record_verdict(
    *, actor: Actor, case_id, verdict: str, now: datetime | None = None
) -> Resolution:
    """After deciding a shadow case blind, the reviewer (or a manager) says whether the
    agent's proposal would have been acceptable: approve, modify or reject. Once."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock(case_id)
        if case.label_source != LabelSource.SHADOW or case.status != Status.RESOLVED:
            raise TransitionError("only a decided shadow case takes a verdict", code="conflict")
        resolution = case.resolution
        decided = actor.user is not None and resolution.resolved_by_id == actor.user.pk
        if not (decided or _is_manager_of(actor, case)):
            raise TransitionError("only who decided the case gives its verdict", code="forbidden")
        if resolution.verdict:
            raise TransitionError("the verdict is already recorded", code="conflict")
        if verdict not in Decision.values:
            raise TransitionError(
                "the verdict is not valid",
                code="invalid",
                fields={"verdict": "must be one of approve, modify, reject"},
            )
        epoch = Scope.objects.filter(pk=case.scope_id).values_list("epoch", flat=True).first()
        resolution.verdict, resolution.verdict_at, resolution.epoch = verdict, now, epoch or 0
        resolution.save(update_fields=["verdict", "verdict_at", "epoch"])
        audit.record(
            actor=actor,
            verb="escalation.verdict_recorded",
            case=case,
            now=now,
            data={"verdict": verdict},
        )
        rollups.count_resolution(case, verdict, epoch=resolution.epoch)
    return resolution


def _decision_errors(case: Escalation, decision: str, final_action, label_values) -> dict:
    errors: dict[str, Any] = {}
    if decision not in Decision.values:
        errors["decision"] = "must be one of approve, modify, reject"
    qa = case.label_source == LabelSource.QA
    # A QA verdict of modify may leave the better action unsaid.
    unsaid = qa and final_action is None
    if decision == Decision.MODIFY and not isinstance(final_action, dict) and not unsaid:
        errors["final_action"] = "a modified decision needs the final action as a JSON object"
    if decision == Decision.APPROVE and case.label_source == LabelSource.SHADOW:
        errors["decision"] = (
            "the proposal is hidden in shadow mode: give your own action (modify) or reject"
        )
    label_errors = labels.validate(case.queue.label_schema or labels.EMPTY_SCHEMA, label_values)
    if label_errors:
        errors["labels"] = label_errors
    return errors


def transfer(
    *,
    actor: Actor,
    case_id,
    to_queue: Queue,
    claim_token=None,
    reason: str = "",
    now: datetime | None = None,
) -> Escalation:
    """Move an open or claimed case to another queue: the claim is dropped, the case is open
    there with that queue's due times; breach history and expiry stay."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock(case_id)
        _require_can_work(actor, case)
        _require_active(case, "transfer")
        if case.status == Status.CLAIMED and not _is_manager_of(actor, case):
            _require_live_claim(actor, case, claim_token, now)
        if not to_queue.is_active:
            raise TransitionError(
                f"queue {to_queue.slug} is inactive",
                code="invalid",
                fields={"queue": "inactive queue"},
            )
        if to_queue.pk == case.queue_id:
            raise TransitionError(
                "the case is already in that queue", code="invalid", fields={"queue": "same queue"}
            )
        from_queue = case.queue
        Transfer.objects.create(
            escalation=case,
            from_queue=from_queue,
            to_queue=to_queue,
            by_user=actor.user,
            reason=reason,
            created_at=now,
        )
        _enter_queue(case, to_queue, now)
        _save(case, now)
        audit.record(
            actor=actor,
            verb="escalation.transferred",
            case=case,
            now=now,
            data={"from_queue": from_queue.slug, "to_queue": to_queue.slug, "reason": reason},
        )
    return case


def cancel(*, actor: Actor, case_id, reason: str = "", now: datetime | None = None) -> Escalation:
    """Withdraw a case: its own agent may, and a manager of its queue with a reason."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock(case_id)
        _require_own_case(actor, case)
        if actor.kind == ActorKind.USER:
            if not _is_manager_of(actor, case):
                raise TransitionError(
                    "only a manager of this queue may cancel a case", code="forbidden"
                )
            if not reason.strip():
                raise TransitionError(
                    "a manager must give a reason to cancel",
                    code="invalid",
                    fields={"reason": "required"},
                )
        _require_active(case, "cancel")
        case.cancel_reason = reason[:500]
        case.cancelled_by_agent = actor.kind == ActorKind.AGENT
        _close(case, Status.CANCELLED, now)
        _save(case, now)
        delivery.schedule(case, now)
        audit.record(
            actor=actor,
            verb="escalation.cancelled",
            case=case,
            now=now,
            data={"reason": case.cancel_reason, "by_agent": case.cancelled_by_agent},
        )
    return case


def expire(*, case_id, now: datetime | None = None) -> Escalation | None:
    """Close a case nobody resolved within its queue's expiry horizon; None if not due."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock(case_id)
        if case.status not in ACTIVE_STATUSES or case.expires_at > now:
            return None
        _close(case, Status.EXPIRED, now)
        _save(case, now)
        delivery.schedule(case, now)
        audit.record(
            actor=Actor.system(),
            verb="escalation.expired",
            case=case,
            now=now,
            data={"expires_at": case.expires_at.isoformat()},
        )
    return case


def append_context(
    *, actor: Actor, case_id, note: str = "", data: dict | None = None, now: datetime | None = None
) -> ContextUpdate:
    """An agent adds to an open or claimed case; reviewers see it at once."""
    now = now or timezone.now()
    data = data or {}
    with transaction.atomic():
        case = _lock(case_id)
        _require_own_case(actor, case)
        _require_active(case, "add context to")
        update = ContextUpdate.objects.create(escalation=case, note=note, data=data, created_at=now)
        _save(case, now)
        audit.record(
            actor=actor,
            verb="escalation.context_added",
            case=case,
            now=now,
            data={
                "update_id": update.pk,
                "content_sha256": content_hash({"note": note, "data": data}),
            },
        )
    return update


def redact(*, actor: Actor, case_id, reason: str, now: datetime | None = None) -> Escalation:
    """Replace a case's personal data (context, metadata, context updates) with a marker.
    Audit events hold only hashes of that data, so the chain stays valid."""
    now = now or timezone.now()
    if not reason.strip():
        raise TransitionError(
            "a redaction needs a reason", code="invalid", fields={"reason": "required"}
        )
    with transaction.atomic():
        case = _lock(case_id)
        marker = {**REDACTED, "at": now.isoformat(), "reason": reason[:500]}
        previous = {
            "context_sha256": content_hash(case.context),
            "metadata_sha256": content_hash(case.metadata),
        }
        case.context = marker
        case.metadata = marker
        case.redacted_at = now
        _save(case, now)
        case.context_updates.update(note="", data=marker)
        audit.record(
            actor=actor,
            verb="escalation.redacted",
            case=case,
            now=now,
            data={"reason": reason[:500], **previous},
        )
    return case
