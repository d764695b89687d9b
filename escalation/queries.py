"""Reads that span rows: the inbox's urgency order and, later, manager statistics."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, connections
from django.db.models import (
    BooleanField,
    Expression,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)

from escalation import rows
from escalation.locks import lock_clause
from escalation.models import Escalation, Status
from escalation.models.cases import ACTIVE_STATUSES

# The inbox order: by next due time (so breached cases come first, then those closest to their
# target), ties by priority, then age. One plain sort key, so the inbox pages by keyset on an
# index and Next case takes exactly the inbox's first case.
URGENCY_ORDER = ("next_due_at", "priority_rank", "created_at", "id")


def claimable_cases(queue_ids, now: datetime) -> QuerySet[Escalation]:
    """Open cases, and claimed ones whose lease already ran out (not yet swept back to open)."""
    return Escalation.objects.filter(
        Q(status=Status.OPEN) | Q(status=Status.CLAIMED, lease_expires_at__lte=now),
        queue_id__in=queue_ids,
    ).order_by(*URGENCY_ORDER)


@functools.cache
def most_urgent_claimable_sql(vendor: str, queues: int, among: int) -> str:
    """claimable_cases(...).first(), locked and skipping locked rows, as plain SQL for
    escalation.rows (Next case runs it on every press): parameters `now`, then `queues` queue
    ids, then `among` case ids (0: any case of those queues)."""
    features, quote = connection.features, connection.ops.quote_name
    lock = lock_clause()
    if lock and features.has_select_for_update_of:
        lock += " OF c"
    if lock and features.has_select_for_update_skip_locked:
        lock += " SKIP LOCKED"
    status, lease, queue = (
        quote(Escalation._meta.get_field(f).column) for f in ("status", "lease_expires_at", "queue")
    )
    placeholders = ", ".join(["%s"] * queues)
    among_sql = f" AND c.id IN ({', '.join(['%s'] * among)})" if among else ""
    order = ", ".join(f"c.{quote(Escalation._meta.get_field(f).column)}" for f in URGENCY_ORDER)
    return (
        f"SELECT {rows.columns(Escalation, 'c')} FROM {rows.table(Escalation)} c"  # noqa: S608
        f" WHERE (c.{status} = '{Status.OPEN}'"
        f" OR (c.{status} = '{Status.CLAIMED}' AND c.{lease} <= %s))"
        f" AND c.{queue} IN ({placeholders}){among_sql}"
        f" ORDER BY {order} LIMIT 1{lock}"
    )


# How many of each queue's most urgent cases Next case considers: enough that reviewers
# pressing it at the same moment each find one not being claimed.
NEXT_CANDIDATES = 8


def next_case_candidates(queue_ids, now: datetime) -> list | None:
    """The ids of the few most urgent claimable cases of each queue, read queue by queue as
    inbox_page does, so Next case never walks through another team's backlog; None when one
    read across the queues costs the same (a single queue, or SQLite)."""
    queue_ids = list(queue_ids)
    features = connections[Escalation.objects.db].features
    if len(queue_ids) < 2 or not features.supports_slicing_ordering_in_compound:
        return None
    heads = [
        claimable_cases([queue_id], now).values_list("pk", flat=True)[:NEXT_CANDIDATES]
        for queue_id in queue_ids
    ]
    return list(heads[0].union(*heads[1:], all=True))


def queue_depths() -> list[dict]:
    """[{queue, status, count}] for every active queue and active status (zeros included)."""
    from django.db.models import Count

    from escalation.models import Queue

    counts = {
        (row["queue__slug"], row["status"]): row["n"]
        for row in Escalation.objects.filter(status__in=[Status.OPEN, Status.CLAIMED])
        .values("queue__slug", "status")
        .annotate(n=Count("pk"))
    }
    return [
        {"queue": slug, "status": status, "count": counts.get((slug, status), 0)}
        for slug in Queue.objects.filter(is_active=True).values_list("slug", flat=True)
        for status in (Status.OPEN, Status.CLAIMED)
    ]


def oldest_open_ages(now: datetime | None = None) -> dict[str, float]:
    """Seconds since the oldest open case entered each active queue (0 when none)."""
    from django.db.models import Min
    from django.utils import timezone

    from escalation.models import Queue

    now = now or timezone.now()
    oldest = dict(
        Escalation.objects.filter(status=Status.OPEN)
        .values_list("queue__slug")
        .annotate(first=Min("entered_queue_at"))
    )
    return {
        slug: max(0.0, (now - oldest[slug]).total_seconds()) if slug in oldest else 0.0
        for slug in Queue.objects.filter(is_active=True).values_list("slug", flat=True)
    }


# --- the reviewer inbox ----------------------------------------------------------------------

INBOX_PAGE = 50
# The list never needs a case's (possibly large) agent content.
INBOX_COLUMNS = (
    "id",
    "summary",
    "confidence",
    "priority",
    "priority_rank",
    "reason",
    "status",
    "external_id",
    "created_at",
    "updated_at",
    "next_due_at",
    "next_risk_at",
    "claim_due_at",
    "resolve_due_at",
    "claim_breached_at",
    "resolve_breached_at",
    "lease_expires_at",
    "queue__slug",
    "queue__name",
    "agent__name",
    "claimed_by__username",
)


@dataclass(frozen=True)
class InboxFilters:
    queue: str = ""
    priority: str = ""
    status: str = ""
    agent: str = ""
    sla: str = ""  # "breached" | "at_risk"
    mine: bool = False
    q: str = ""


def inbox_queues(queue_ids, filters: InboxFilters) -> list[int]:
    """The queues a page reads: the visible ones, or the one the queue filter names."""
    from escalation.models import Queue

    if not filters.queue:
        return list(queue_ids)
    return list(
        Queue.objects.filter(pk__in=queue_ids, slug=filters.queue).values_list("pk", flat=True)
    )


def inbox_cases(queue_ids, filters: InboxFilters, user, now: datetime) -> QuerySet[Escalation]:
    cases = Escalation.objects.filter(status__in=ACTIVE_STATUSES, queue_id__in=queue_ids)
    if filters.queue:
        cases = cases.filter(queue__slug=filters.queue)
    if filters.priority:
        cases = cases.filter(priority=filters.priority)
    if filters.status:
        cases = cases.filter(status=filters.status)
    if filters.agent:
        cases = cases.filter(agent__name=filters.agent)
    if filters.sla == "breached":
        cases = cases.filter(next_due_at__lte=now)
    elif filters.sla == "at_risk":
        cases = cases.filter(next_risk_at__lte=now, next_due_at__gt=now)
    if filters.mine:
        cases = cases.filter(status=Status.CLAIMED, claimed_by=user)
    if filters.q:
        cases = cases.filter(Q(summary__icontains=filters.q) | Q(external_id=filters.q))
    return cases


class RowAfter(Expression):
    """`(a, b, c, d) > (x, y, z, w)`: compared as a row, in the order of the index on those
    columns, the keyset is the start of one index range. The same test spelled with ORs is
    no index condition, so every page would first read and discard all the rows before it."""

    def __init__(self, fields: tuple[str, ...], values: tuple) -> None:
        super().__init__(output_field=BooleanField())
        self.fields = [F(name) for name in fields]
        self.values = [Value(value) for value in values]

    def get_source_expressions(self):
        return [*self.fields, *self.values]

    def set_source_expressions(self, exprs):
        self.fields, self.values = exprs[: len(self.fields)], exprs[len(self.fields) :]

    def as_sql(self, compiler, connection):
        lhs, rhs, params = [], [], []
        for side, exprs in ((lhs, self.fields), (rhs, self.values)):
            for expr in exprs:
                sql, expr_params = compiler.compile(expr)
                side.append(sql)
                params.extend(expr_params)
        return f"({', '.join(lhs)}) > ({', '.join(rhs)})", params


def inbox_page(
    cases: QuerySet[Escalation], queue_ids, after: tuple | None, limit: int = INBOX_PAGE
) -> tuple[list[Escalation], tuple | None]:
    """One page in urgency order after the keyset `after`; returns (rows, keyset of the next
    page or None). `queue_ids`: the queues `cases` covers (inbox_queues).

    Read one queue at a time and merged: each queue's next page is a short range of
    case_queue_urgency_idx, so a page costs the same on page 1 and page 1,000 and however
    many cases other teams' queues hold. One index across all queues would have the page
    skip every case of a queue the reviewer does not see."""
    if after is not None:
        cases = cases.filter(RowAfter(URGENCY_ORDER, after))
    cases = (
        cases.select_related("queue", "agent", "claimed_by")
        .only(*INBOX_COLUMNS)
        .order_by(*URGENCY_ORDER)
    )
    queue_ids = list(queue_ids)
    features = connections[cases.db].features
    if len(queue_ids) > 1 and features.supports_slicing_ordering_in_compound:
        per_queue = [cases.filter(queue_id=queue_id)[: limit + 1] for queue_id in queue_ids]
        cases = per_queue[0].union(*per_queue[1:], all=True).order_by(*URGENCY_ORDER)
    # SQLite (the embedded set-up) cannot LIMIT inside a UNION; its queues are small.
    rows = list(cases[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], (last.next_due_at, last.priority_rank, last.created_at, last.id)


COUNT_CAP = 1000


class CappedCount(Subquery):
    """COUNT over a LIMITed subquery: a bounded index scan however deep the queue is."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS capped)"
    output_field = IntegerField()


def queue_counts(queue_ids, now: datetime) -> list[dict]:
    """Per visible queue: open, claimed and breached counts, each capped at COUNT_CAP (shown
    as "1000+"): exact numbers past that cost a full scan and change nothing for a reviewer.
    One query, each count a subquery per queue."""
    from escalation.models import Queue

    def capped(cases: QuerySet[Escalation]) -> CappedCount:
        return CappedCount(cases.order_by().values("pk")[: COUNT_CAP + 1])  # no sort before LIMIT

    active = Escalation.objects.filter(queue_id=OuterRef("pk"), status__in=ACTIVE_STATUSES)
    return list(
        Queue.objects.filter(pk__in=queue_ids)
        .order_by("slug")
        .annotate(
            open=capped(active.filter(status=Status.OPEN)),
            claimed=capped(active.filter(status=Status.CLAIMED)),
            breached=capped(active.filter(next_due_at__lte=now)),
        )
        .values("slug", "name", "open", "claimed", "breached")
    )


def inbox_version(queue_ids, now: datetime) -> str:
    """A token that changes when anything in these queues changes (or a minute passes, so the
    SLA clocks shown stay fresh). One LIMIT-1 index lookup per queue: a MAX() across
    `queue_id IN (...)` would scan every row."""
    from escalation.models import Queue

    newest = (
        Escalation.objects.filter(queue_id=OuterRef("pk"))
        .order_by("-updated_at")
        .values("updated_at")[:1]
    )
    stamps = [
        stamp
        for stamp in Queue.objects.filter(pk__in=queue_ids)
        .annotate(newest=Subquery(newest))
        .values_list("newest", flat=True)
        if stamp is not None
    ]
    latest = max(stamps, default=None)
    return f"{latest.timestamp() if latest else 0:.6f}-{int(now.timestamp() // 60)}"


# --- calibration -----------------------------------------------------------------------------


def calibration_counts(cases: QuerySet[Escalation], by: tuple[str, ...] = ()) -> list[dict]:
    """Per-grid-point aggregates of the labelled cases in `cases`, for
    escalation.calibration.summarize_grid: one GROUP BY, at most 101 rows, whatever the volume.

    A case's label is its resolution's decision, or for a shadow case the verdict given after
    deciding blind (a shadow case without one is left out, as are unresolved cases). Each row:
    g = floor((confidence + EPS) * 100) (the same formula as calibration.grid_index, evaluated
    in double precision by the database), n, errors (modified + rejected), approved, modified,
    rejected, sum_c, sum_c2, sum_c_approved (sum of confidence over approved cases) and min_c.
    `by`: more columns to group by, carried in the rows (escalation.rollups keeps one row per
    agent, version, queue, `source` — the label source — and `epoch`, the scope's epoch when
    the label was made).
    """
    from django.db.models import (
        Case,
        CharField,
        Count,
        F,
        FloatField,
        IntegerField,
        Min,
        Sum,
        Value,
        When,
    )
    from django.db.models.functions import Cast, Coalesce, Floor

    from escalation import calibration
    from escalation.models import Decision

    zero = Value(0.0, output_field=FloatField())
    grid = Cast(
        Floor(
            (F("confidence") + Value(calibration.EPS, output_field=FloatField()))
            * Value(float(calibration.GRID), output_field=FloatField())
        ),
        IntegerField(),
    )
    outcome = Case(
        When(label_source="shadow", then=F("resolution__verdict")),
        default=F("resolution__decision"),
        output_field=CharField(),
    )
    rows = (
        cases.filter(status=Status.RESOLVED)
        .annotate(g=grid, outcome=outcome, source=F("label_source"), epoch=F("resolution__epoch"))
        .filter(outcome__in=Decision.values)
        .order_by()
        .values(*by, "g")
        .annotate(
            n=Count("pk"),
            errors=Count("pk", filter=~Q(outcome=Decision.APPROVE)),
            approved=Count("pk", filter=Q(outcome=Decision.APPROVE)),
            modified=Count("pk", filter=Q(outcome=Decision.MODIFY)),
            rejected=Count("pk", filter=Q(outcome=Decision.REJECT)),
            sum_c=Coalesce(Sum("confidence"), zero),
            sum_c2=Coalesce(
                Sum(F("confidence") * F("confidence"), output_field=FloatField()), zero
            ),
            sum_c_approved=Coalesce(Sum("confidence", filter=Q(outcome=Decision.APPROVE)), zero),
            min_c=Min("confidence"),
        )
        .order_by(*by, "g")
    )
    return list(rows)
