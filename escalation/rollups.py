"""Keeping the manager console's rollups (escalation.models.stats) up to date.

Two ways, each chosen for what it counts:

- Calibration cells are exact counters, changed in the resolve transaction itself
  (count_resolution). A resolution never changes afterwards, so one increment per resolution is
  the whole story, and the certificate never lags behind the last decision. The increment is one
  upsert, so a cell's first label needs no lock around it, and a transaction touches one cell,
  so cells cannot deadlock.
- Day rollups (cases, resolutions, duration histograms per UTC day) are rebuilt, not
  incremented, by a periodic fold (refresh): it reads the audit events since its cursor (the
  log is gap-free and in commit order, so nothing is skipped), finds the days of the cases they
  touched, and recomputes those days from the case rows in one transaction. A transfer, a
  priority raise or a late breach simply lands in the next rebuild of that day; a rebuild is
  idempotent, so a fold that dies half-way changes nothing and the next one redoes it.

Durations are kept as histograms with 8 log-spaced buckets per doubling (bucket_of), each
bucket carrying its smallest and largest value. percentiles() reads percentile_cont's ranks off
them: exact whenever a bucket holds at most two distinct values (every small data set), and
otherwise within one bucket, i.e. less than 9.1% of the true value (and in practice much
closer: rank interpolation between a bucket's own extremes was within 1.7% on long-tailed
test sets). Sixteen buckets per doubling would halve the bound but read 1.7x the rows.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    Max,
    Min,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Cast, Floor, Least, Ln, TruncDate

from escalation import calibration
from escalation.models import (
    AuditChainHead,
    AuditEvent,
    Decision,
    Escalation,
    Resolution,
    Status,
    SweepCursor,
)
from escalation.models.stats import (
    CalibrationCell,
    CaseDayStat,
    DurationDayStat,
    Metric,
    ResolutionDayStat,
)

CURSOR = "stats-rollup"
BUCKETS_PER_DOUBLING = 8
# A fold further behind than this rebuilds everything at once (cheaper than many folds).
REBUILD_AFTER_EVENTS = 200_000

BREACHED = Q(claim_breached_at__isnull=False) | Q(resolve_breached_at__isnull=False)


# --- SQL expressions ----------------------------------------------------------------------------


class Seconds(Func):
    """later - earlier, two timestamps, in seconds (double precision), on both backends."""

    arity = 2
    output_field = FloatField()

    def as_sql(self, compiler, connection, **extra_context):  # PostgreSQL
        later, earlier = (compiler.compile(e) for e in self.get_source_expressions())
        sql = f"EXTRACT(EPOCH FROM ({later[0]} - {earlier[0]}))::double precision"
        return sql, (*later[1], *earlier[1])

    def as_sqlite(self, compiler, connection, **extra_context):
        later, earlier = (compiler.compile(e) for e in self.get_source_expressions())
        sql = f"((julianday({later[0]}) - julianday({earlier[0]})) * 86400.0)"
        return sql, (*later[1], *earlier[1])


def bucket_expression(seconds) -> Case:
    """bucket_of() in SQL."""
    return Case(
        When(**{f"{seconds}__lt": 1.0}, then=Value(-1)),
        default=Cast(
            Floor(Ln(F(seconds)) * Value(BUCKETS_PER_DOUBLING / math.log(2))), IntegerField()
        ),
        output_field=IntegerField(),
    )


def bucket_of(seconds: float) -> int:
    """-1 for under a second, else floor(8 * log2(seconds)): each bucket spans a factor of
    2 ** (1 / 8), 9.1% (the SQL above computes the same, up to floating point at an edge)."""
    if seconds < 1.0:
        return -1
    return math.floor(math.log(seconds) * BUCKETS_PER_DOUBLING / math.log(2))


def band_expression() -> Least:
    """Confidence band 0..9: floor((c + EPS) * 10), 1.0 folded into band 9, as
    calibration.band_index."""
    return Least(
        Cast(
            Floor(
                (F("confidence") + Value(calibration.EPS, output_field=FloatField()))
                * Value(float(calibration.BANDS), output_field=FloatField())
            ),
            IntegerField(),
        ),
        Value(calibration.BANDS - 1, output_field=IntegerField()),
    )


def utc_day(field: str) -> TruncDate:
    return TruncDate(field, tzinfo=UTC)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


# --- percentiles from histograms ----------------------------------------------------------------


def percentiles(
    buckets: Iterable[tuple[int, int, float, float]], fractions: Sequence[float]
) -> list[float | None]:
    """percentile_cont for each fraction p over the durations described by `buckets`
    ((bucket, count, smallest, largest), one tuple per bucket): with n durations and
    h = p (n - 1), v[floor h] + (h - floor h) (v[floor h + 1] - v[floor h]), where v[r], the
    r-th smallest, is read inside its bucket as spread evenly from its smallest to its largest
    value. [None, ...] when there are none."""
    rows = sorted(b for b in buckets if b[1] > 0)
    total = sum(b[1] for b in rows)
    if not total:
        return [None] * len(fractions)
    ends = []  # ends[i]: how many durations lie in buckets 0..i
    running = 0
    for row in rows:
        running += row[1]
        ends.append(running)

    def value_at(rank: int) -> float:
        i = bisect.bisect_right(ends, rank)
        _, count, low, high = rows[i]
        if count == 1:
            return low
        position = rank - (ends[i] - count)
        return low + (high - low) * position / (count - 1)

    result: list[float | None] = []
    for p in fractions:
        h = p * (total - 1)
        lo = math.floor(h)
        value = value_at(lo)
        if h > lo:
            value += (h - lo) * (value_at(lo + 1) - value)
        result.append(value)
    return result


def merged_percentiles(rows: Iterable[dict], key: str | None, fractions: Sequence[float]) -> dict:
    """{group key: [percentiles]} from histogram rows (dicts with bucket, n, lo, hi and the
    key's column), merging rows of one group and bucket (their counts add, their ranges join);
    key None: everything in one group, keyed None."""
    groups: dict = {}
    for row in rows:  # one row per group and bucket, never per case
        buckets = groups.setdefault(row[key] if key else None, {})
        b = row["bucket"]
        n, lo, hi = buckets.get(b, (0, math.inf, -math.inf))
        buckets[b] = (n + row["n"], min(lo, row["lo"]), max(hi, row["hi"]))
    return {
        k: percentiles([(b, *v) for b, v in buckets.items()], fractions)
        for k, buckets in groups.items()
    }


# --- calibration cells (exact, in the resolve transaction) --------------------------------------


# One label's cell, inserted, or added to the cell when it exists (PostgreSQL and SQLite).
_CELL_UPSERT_SQL = """
INSERT INTO escalation_calibrationcell AS cell (agent_id, agent_version, queue_id, source, epoch,
    g, n, approved, modified, rejected, sum_c, sum_c2, sum_c_approved, min_c)
VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (agent_id, agent_version, queue_id, source, epoch, g) DO UPDATE SET
    n = cell.n + 1,
    approved = cell.approved + excluded.approved,
    modified = cell.modified + excluded.modified,
    rejected = cell.rejected + excluded.rejected,
    sum_c = cell.sum_c + excluded.sum_c,
    sum_c2 = cell.sum_c2 + excluded.sum_c2,
    sum_c_approved = cell.sum_c_approved + excluded.sum_c_approved,
    min_c = CASE WHEN excluded.min_c < cell.min_c THEN excluded.min_c ELSE cell.min_c END
"""


def count_resolution(case: Escalation, decision: str, *, epoch: int = 0) -> None:
    """Add one label of `case` (its decision, or a shadow case's verdict) to its calibration
    cell: by agent, version, queue, label source and the scope's epoch. Call inside the
    transaction that makes the label. One upsert: a cell's first label and a concurrent one
    need no other lock (a transaction touches one cell, so cells cannot deadlock)."""
    c = float(case.confidence)
    key = [case.agent_id, case.agent_version, case.queue_id, case.label_source, epoch]
    key.append(calibration.grid_index(c))
    counts = [int(decision == d) for d in (Decision.APPROVE, Decision.MODIFY, Decision.REJECT)]
    sums = [c, c * c, c if decision == Decision.APPROVE else 0.0]
    with connection.cursor() as cursor:
        cursor.execute(_CELL_UPSERT_SQL, key + counts + sums + [c])


def rebuild_calibration() -> int:
    """Recompute every cell from the resolutions (after a bulk load, or to check the
    counters). Returns cells. On PostgreSQL the cells table is locked against writes (reads go
    on): a resolution that already counted its label commits first and is in the rebuild, one
    that has not waits for it and counts into the rebuilt cell. (SQLite serializes writers.)"""
    from escalation.queries import calibration_counts

    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                table = connection.ops.quote_name(CalibrationCell._meta.db_table)
                cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        CalibrationCell.objects.all().delete()
        rows = calibration_counts(
            Escalation.objects.all(),
            by=("agent_id", "agent_version", "queue_id", "source", "epoch"),
        )
        CalibrationCell.objects.bulk_create(
            [CalibrationCell(**{k: v for k, v in r.items() if k != "errors"}) for r in rows],
            batch_size=2000,
        )
    return len(rows)


# --- day rollups (rebuilt by the fold) ----------------------------------------------------------


def _case_day_rows(cases: QuerySet[Escalation]) -> list[CaseDayStat]:
    rows = (
        cases.annotate(day=utc_day("created_at"), band=band_expression())
        .order_by()
        .values("day", "queue_id", "agent_id", "priority", "band")
        .annotate(
            cases=Count("pk"),
            breached=Count("pk", filter=BREACHED),
            claimed=Count("pk", filter=Q(first_claimed_at__isnull=False)),
            resolved=Count("pk", filter=Q(status=Status.RESOLVED)),
        )
    )
    return [CaseDayStat(**row) for row in rows]


def _resolution_day_rows(resolutions: QuerySet[Resolution]) -> list[ResolutionDayStat]:
    rows = (
        resolutions.annotate(day=utc_day("resolved_at"), queue_id=F("escalation__queue_id"))
        .order_by()
        .values("day", "queue_id", "resolved_by_id", "decision")
        .annotate(
            resolved=Count("pk"),
            breached=Count(
                "pk",
                filter=Q(escalation__claim_breached_at__isnull=False)
                | Q(escalation__resolve_breached_at__isnull=False),
            ),
        )
    )
    return [ResolutionDayStat(reviewer_id=row.pop("resolved_by_id"), **row) for row in rows]


def _histogram_rows(
    timed: QuerySet, metric: str, day_field: str, group_field: str, source: str
) -> list[DurationDayStat]:
    """`timed` annotated with `s` (seconds), grouped by day, queue, bucket and one more column
    (`source`, stored in DurationDayStat.`group_field`: priority or reviewer)."""
    rows = (
        timed.annotate(day=utc_day(day_field), b=bucket_expression("s"), grp=F(source))
        .order_by()
        .values("day", "queue_id", "grp", "b")
        .annotate(n=Count("pk"), min_s=Min("s"), max_s=Max("s"))
    )
    return [
        DurationDayStat(
            metric=metric,
            day=row["day"],
            queue_id=row["queue_id"],
            bucket=row["b"],
            n=row["n"],
            min_s=row["min_s"],
            max_s=row["max_s"],
            **{group_field: row["grp"]},
        )
        for row in rows
    ]


def _created_histograms(cases: QuerySet[Escalation]) -> list[DurationDayStat]:
    claimed = cases.filter(first_claimed_at__isnull=False).annotate(
        s=Seconds(F("first_claimed_at"), F("created_at"))
    )
    resolved = cases.filter(status=Status.RESOLVED, resolution__isnull=False).annotate(
        s=Seconds(F("resolution__resolved_at"), F("created_at"))
    )
    return [
        *_histogram_rows(claimed, Metric.CLAIM, "created_at", "priority", "priority"),
        *_histogram_rows(resolved, Metric.RESOLVE, "created_at", "priority", "priority"),
    ]


def _resolved_histograms(resolutions: QuerySet[Resolution]) -> list[DurationDayStat]:
    base = resolutions.annotate(queue_id=F("escalation__queue_id"))
    to_resolve = base.annotate(s=Seconds(F("resolved_at"), F("escalation__created_at")))
    handling = base.filter(escalation__claimed_at__isnull=False).annotate(
        s=Seconds(F("resolved_at"), F("escalation__claimed_at"))
    )
    return [
        *_histogram_rows(
            to_resolve, Metric.REVIEWER_RESOLVE, "resolved_at", "reviewer_id", "resolved_by_id"
        ),
        *_histogram_rows(handling, Metric.HANDLING, "resolved_at", "reviewer_id", "resolved_by_id"),
    ]


CREATED_METRICS = (Metric.CLAIM, Metric.RESOLVE)
RESOLVED_METRICS = (Metric.REVIEWER_RESOLVE, Metric.HANDLING)


def rebuild_created_day(day: date) -> None:
    """Recompute the rollups keyed by the day cases were created."""
    start, end = day_bounds(day)
    cases = Escalation.objects.filter(created_at__gte=start, created_at__lt=end)
    CaseDayStat.objects.filter(day=day).delete()
    DurationDayStat.objects.filter(day=day, metric__in=CREATED_METRICS).delete()
    CaseDayStat.objects.bulk_create(_case_day_rows(cases), batch_size=5000)
    DurationDayStat.objects.bulk_create(_created_histograms(cases), batch_size=5000)


def rebuild_resolved_day(day: date) -> None:
    """Recompute the rollups keyed by the day of the resolution."""
    start, end = day_bounds(day)
    resolutions = Resolution.objects.filter(resolved_at__gte=start, resolved_at__lt=end)
    ResolutionDayStat.objects.filter(day=day).delete()
    DurationDayStat.objects.filter(day=day, metric__in=RESOLVED_METRICS).delete()
    ResolutionDayStat.objects.bulk_create(_resolution_day_rows(resolutions), batch_size=5000)
    DurationDayStat.objects.bulk_create(_resolved_histograms(resolutions), batch_size=5000)


def rebuild_days() -> None:
    """Recompute every day rollup from all cases (one grouped pass per table)."""
    CaseDayStat.objects.all().delete()
    ResolutionDayStat.objects.all().delete()
    DurationDayStat.objects.all().delete()
    cases = Escalation.objects.all()
    resolutions = Resolution.objects.all()
    CaseDayStat.objects.bulk_create(_case_day_rows(cases), batch_size=5000)
    ResolutionDayStat.objects.bulk_create(_resolution_day_rows(resolutions), batch_size=5000)
    DurationDayStat.objects.bulk_create(
        [*_created_histograms(cases), *_resolved_histograms(resolutions)], batch_size=5000
    )


def _lock_cursor() -> SweepCursor | None:
    """The fold's cursor, locked for this transaction; None while another fold holds it."""
    SweepCursor.objects.get_or_create(name=CURSOR, defaults={"position": -1})
    locked = SweepCursor.objects.filter(name=CURSOR)
    if connection.features.has_select_for_update_skip_locked:
        locked = locked.select_for_update(skip_locked=True)
    return locked.first()


def refresh(*, limit: int = 50_000) -> int:
    """Fold up to `limit` audit events since the last run into the day rollups; returns how
    many. The first run (cursor -1) or one far behind rebuilds everything instead. Runs in one
    transaction: readers see the rollups before or after, never half-way."""
    with transaction.atomic():
        cursor = _lock_cursor()
        if cursor is None:
            return 0
        # Read the head before the cases: whatever commits after this is folded next time.
        head = AuditChainHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
        start = cursor.position
        if start < 0 or head - start > REBUILD_AFTER_EVENTS:
            rebuild_days()
        elif head > start:
            upper = min(head, start + limit)
            events = AuditEvent.objects.filter(
                seq__gt=start, seq__lte=upper, escalation__isnull=False
            ).values("escalation_id")
            touched = Escalation.objects.filter(pk__in=events)
            created = touched.annotate(d=utc_day("created_at")).values_list("d", flat=True)
            resolved = Resolution.objects.filter(escalation__in=touched.values("pk")).annotate(
                d=utc_day("resolved_at")
            )
            for day in sorted(set(created.order_by().distinct())):
                rebuild_created_day(day)
            for day in sorted(set(resolved.order_by().values_list("d", flat=True).distinct())):
                rebuild_resolved_day(day)
            head = upper
        cursor.position = head
        cursor.save()  # updated_at: the "as of" the pages show
        return head - max(start, 0)


def reset_days() -> None:
    """Make the next refresh rebuild every day rollup."""
    with transaction.atomic():
        _lock_cursor()
        SweepCursor.objects.filter(name=CURSOR).update(position=-1)


def rebuild() -> None:
    """Everything from scratch: the calibration cells and the day rollups."""
    rebuild_calibration()
    reset_days()
    refresh()


def as_of() -> datetime | None:
    """When the day rollups were last folded (None: never)."""
    return (
        SweepCursor.objects.filter(name=CURSOR, position__gte=0)
        .values_list("updated_at", flat=True)
        .first()
    )
