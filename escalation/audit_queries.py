"""Reads behind the manager's audit log: who may see which events, the filters, keyset pages,
one case's timeline, CSV rows in keyset batches, and the last chain verification.

Every list is keyed on seq (the primary key) and never uses OFFSET, so the thousandth page costs
what the first does however many millions of events there are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts import permissions
from escalation.audit import canonical_json
from escalation.models import Agent, AuditEvent, AuditVerification, Decision, Escalation, Queue

if TYPE_CHECKING:
    from django.http import QueryDict

PAGE_SIZE = 100
EXPORT_BATCH = 1000
CSV_COLUMNS = [
    "seq",
    "created_at",
    "verb",
    "actor_kind",
    "actor_name",
    "case",
    "queue",
    "data",
    "hash",
]
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Verbs offered as suggestions in the filter; any verb typed is accepted.
KNOWN_VERBS = [
    "escalation.created",
    "escalation.routed",
    "escalation.claimed",
    "escalation.released",
    "escalation.lease_expired",
    "escalation.resolved",
    "escalation.transferred",
    "escalation.cancelled",
    "escalation.expired",
    "escalation.context_added",
    "escalation.redacted",
    "sla.claim_breached",
    "sla.resolve_breached",
    "delivery.redelivered",
    "agent.key_created",
    "agent.key_revoked",
    "escalation.verdict_recorded",
    "policy.decided",
    "autonomy.promoted",
    "autonomy.mode_set",
    "autonomy.amber",
    "autonomy.fell_back.window",
    "autonomy.fell_back.cusum",
    "autonomy.fell_back.critical",
    "autonomy.fell_back.kill_switch",
]


@dataclass(frozen=True)
class AuditFilters:
    queue: str = ""
    agent: str = ""
    reviewer: str = ""
    verb: str = ""
    decision: str = ""
    date_from: date | None = None
    date_to: date | None = None
    errors: dict[str, str] = field(default_factory=dict)

    FIELDS = ("queue", "agent", "reviewer", "verb", "decision", "from", "to")

    @classmethod
    def from_params(cls, params: QueryDict) -> AuditFilters:
        """Read the query string; a bad value is reported and ignored, never a 500."""
        errors: dict[str, str] = {}

        def text(name: str, limit: int = 150) -> str:
            # No stored name holds a NUL, and PostgreSQL refuses one in a query.
            return params.get(name, "").replace("\x00", "").strip()[:limit]

        def day(name: str) -> date | None:
            raw = text(name, 10)
            if not raw:
                return None
            try:
                parsed = date.fromisoformat(raw)
            except ValueError:
                parsed = None
            if parsed is None or parsed == date.max:  # the period ends the day after `to`
                errors[name] = "use a date like 2025-03-31"
            return parsed if parsed != date.max else None

        decision = text("decision", 20)
        if decision and decision not in Decision.values:
            errors["decision"] = "choose approve, modify or reject"
            decision = ""
        return cls(
            queue=text("queue"),
            agent=text("agent"),
            reviewer=text("reviewer"),
            verb=text("verb", 64),
            decision=decision,
            date_from=day("from"),
            date_to=day("to"),
            errors=errors,
        )


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def visible_events(user) -> QuerySet:
    """Events of the queues this person manages; a superuser also sees events of no queue
    (agent keys and other administrative acts)."""
    if getattr(user, "is_superuser", False) and user.is_active:
        return AuditEvent.objects.all()
    # A short list of ids, not a subquery: the planner can then use the (queue, seq) index.
    queue_ids = list(permissions.managed_queues(user).values_list("pk", flat=True))
    return AuditEvent.objects.filter(queue_id__in=queue_ids)


def filtered_events(user, filters: AuditFilters) -> QuerySet:
    events = visible_events(user)
    if filters.queue:
        # Looked up within what the person manages: naming another team's queue shows nothing.
        queue = Queue.objects.filter(slug=filters.queue).values_list("pk", flat=True).first()
        events = events.filter(queue_id=queue) if queue else events.none()
    if filters.agent:
        agent = Agent.objects.filter(name=filters.agent).values_list("pk", flat=True).first()
        if agent is None:
            events = events.none()
        else:
            events = events.filter(Q(actor_agent_id=agent) | Q(escalation__agent_id=agent))
    if filters.reviewer:
        person = (
            get_user_model()
            .objects.filter(username=filters.reviewer)
            .values_list("pk", flat=True)
            .first()
        )
        events = events.filter(actor_user_id=person) if person else events.none()
    if filters.verb:
        events = events.filter(verb=filters.verb)
    if filters.decision:
        events = events.filter(verb="escalation.resolved", data__decision=filters.decision)
    if filters.date_from:
        events = events.filter(created_at__gte=_start_of(filters.date_from))
    if filters.date_to:
        events = events.filter(created_at__lt=_start_of(filters.date_to + timedelta(days=1)))
    return events


def page(events: QuerySet, before: int | None) -> tuple[list[AuditEvent], int | None]:
    """Newest first, PAGE_SIZE rows older than `before`; and the cursor of the next page."""
    if before is not None:
        events = events.filter(seq__lt=before)
    # The primary key alone orders: no ties, so no row is skipped or shown twice.
    rows = list(events.select_related("queue").order_by("-seq")[: PAGE_SIZE + 1])
    if len(rows) > PAGE_SIZE:
        return rows[:PAGE_SIZE], rows[PAGE_SIZE - 1].seq
    return rows, None


def parse_cursor(text: str) -> int | None:
    """`before=<seq>`; anything else starts from the newest."""
    return int(text) if text.isdigit() and len(text) < 19 else None


def case_for_timeline(user, case_id) -> Escalation:
    """The case if it sits in a queue this person manages (any case for a superuser); 404
    otherwise, without saying whether it exists."""
    cases = Escalation.objects.select_related("queue", "agent")
    if not (getattr(user, "is_superuser", False) and user.is_active):
        cases = cases.filter(queue__in=permissions.managed_queues(user))
    case = cases.filter(pk=case_id).first()
    if case is None:
        raise Http404("no such case")
    return case


def timeline(case: Escalation) -> QuerySet:
    return AuditEvent.objects.filter(escalation=case).select_related("queue").order_by("seq")


# --- CSV export ------------------------------------------------------------------------------


def _cell(value) -> str | int:
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class _Line:
    """A file-like object that hands back what csv.writer writes: one row at a time, so the
    export never holds more than a batch in memory."""

    def write(self, value: str) -> str:
        return value


_EXPORT_FIELDS = (
    "seq",
    "created_at",
    "verb",
    "actor_kind",
    "actor_name",
    "escalation_id",
    "queue_id",
    "data",
    "hash",
)


def export_batches(user, filters: AuditFilters) -> tuple[QuerySet, int, dict[int, str]]:
    """What the export walks: the filtered events up to today's head (events written during a
    long export are left for the next one), and queue slugs by id (a few rows, read once, so
    no join per event)."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    slugs = dict(Queue.objects.values_list("pk", "slug"))
    return filtered_events(user, filters).filter(seq__lte=head), head, slugs


def export_batch(events: QuerySet, after: int) -> list[tuple]:
    return list(
        events.filter(seq__gt=after).order_by("seq").values_list(*_EXPORT_FIELDS)[:EXPORT_BATCH]
    )


def csv_header() -> str:
    return csv.writer(_Line()).writerow(CSV_COLUMNS)


def csv_lines(rows: list[tuple], slugs: dict[int, str]) -> Iterator[str]:
    writer = csv.writer(_Line())
    for seq, created_at, verb, kind, name, case_id, queue_id, data, digest in rows:
        yield writer.writerow(
            [
                seq,
                _cell(created_at.isoformat()),
                _cell(verb),
                _cell(kind),
                _cell(name),
                _cell(case_id),
                _cell(slugs.get(queue_id, "")),
                _cell(canonical_json(data)),
                _cell(digest),
            ]
        )


def csv_rows(user, filters: AuditFilters) -> Iterator[str]:
    """The export as text lines, in seq order, fetched in keyset batches of EXPORT_BATCH."""
    events, _, slugs = export_batches(user, filters)
    yield csv_header()
    after = 0
    while rows := export_batch(events, after):
        yield from csv_lines(rows, slugs)
        after = rows[-1][0]


# --- chain verification ----------------------------------------------------------------------


def last_verification() -> AuditVerification | None:
    return (
        AuditVerification.objects.filter(finished_at__isnull=False)
        .select_related("requested_by")
        .order_by("-finished_at", "-pk")
        .first()
    )


def pending_verification() -> AuditVerification | None:
    """A verification asked for and not finished yet (queued or running)."""
    return (
        AuditVerification.objects.filter(finished_at__isnull=True)
        .order_by("-started_at", "-pk")
        .first()
    )
