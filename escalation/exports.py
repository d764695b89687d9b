"""Label exports: the one streaming implementation behind `GET /api/v1/labels?format=jsonl|csv`
and the manager's `/manage/exports/labels.<jsonl|csv>`.

Rows come from the database in keyset batches of (resolution.resolved_at, id), oldest first, so
memory stays flat however many labels match; each batch is turned into lines (one JSON object,
or one CSV row written through the csv module into a small buffer) that are yielded one by one.

Under ASGI (production) the iterator must be async, or Django would buffer a sync one whole;
each batch then borrows a database connection only for its own query.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q, QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from escalation.api.serializers import LabelSerializer
from escalation.audit import canonical_json
from escalation.models import Escalation, Status

BATCH = 500

JSONL = "jsonl"
CSV = "csv"
FORMATS = (JSONL, CSV)
CONTENT_TYPES = {JSONL: "application/x-ndjson", CSV: "text/csv; charset=utf-8"}

CSV_COLUMNS = (
    "id",
    "queue",
    "agent",
    "agent_version",
    "external_id",
    "created_at",
    "resolved_at",
    "reviewer",
    "decision",
    "confidence",
    "proposed_action",
    "final_action",
    "labels",
    "note",
    "summary",
    "reason",
    "context",
    "metadata",
    "label_source",
    "verdict",
)
# Cells holding canonical JSON. Valid JSON cannot carry a spreadsheet formula (only a bare
# number may start with "-"), so these are written as is and always round-trip.
CSV_JSON_COLUMNS = frozenset({"proposed_action", "final_action", "labels", "context", "metadata"})
# A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def labels_of(cases: QuerySet[Escalation]) -> QuerySet[Escalation]:
    """The resolved cases among `cases`, with what a label row reads joined in."""
    return cases.filter(status=Status.RESOLVED).select_related(
        "agent", "queue", "resolution", "resolution__resolved_by"
    )


def label_batch(
    cases: QuerySet[Escalation], after: tuple | None, limit: int
) -> tuple[list[Escalation], tuple | None]:
    """Labels oldest first after the keyset (resolved_at, id); returns the rows and the
    position of the last one (None when there are no more)."""
    if after is not None:
        cases = cases.filter(
            Q(resolution__resolved_at__gt=after[0])
            | Q(resolution__resolved_at=after[0], pk__gt=after[1])
        )
    rows = list(cases.order_by("resolution__resolved_at", "pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    last = (rows[-1].resolution.resolved_at, rows[-1].pk) if rows and more else None
    return rows, last


def label_record(case: Escalation, *, with_agent: bool = False) -> dict:
    """The label as the API shows it; `with_agent` adds the agent's name (for exports that
    span agents)."""
    record = LabelSerializer(case).data
    if with_agent:
        record["agent"] = {"name": case.agent.name, **record["agent"]}
    return record


def neutralise(cell: str) -> str:
    """Keep a spreadsheet from running a text cell as a formula."""
    return "'" + cell if cell.startswith(FORMULA_TRIGGERS) else cell


def csv_row(case: Escalation) -> list[str]:
    record = label_record(case)
    values = {
        "id": record["id"],
        "queue": record["queue"],
        "agent": case.agent.name,
        "agent_version": record["agent"]["agent_version"],
        "external_id": record["external_id"],
        "created_at": record["created_at"],
        "resolved_at": record["resolved_at"],
        "reviewer": record["reviewer"],
        "decision": record["decision"],
        "confidence": repr(record["agent"]["confidence"]),
        "proposed_action": record["agent"]["proposed_action"],
        "final_action": record["final_action"],
        "labels": record["labels"],
        "note": record["note"],
        "summary": record["input"]["summary"],
        "reason": record["input"]["reason"],
        "context": record["input"]["context"],
        "metadata": record["input"]["metadata"],
        "label_source": record["label_source"],
        "verdict": record["verdict"],
    }
    return [
        canonical_json(values[name]) if name in CSV_JSON_COLUMNS else neutralise(values[name] or "")
        for name in CSV_COLUMNS
    ]


class _CsvLines:
    """csv.writer over a small buffer: each row is written, taken out and the buffer emptied."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer)

    def line(self, row) -> str:
        self.writer.writerow(row)
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate(0)
        return text


def _line_maker(fmt: str, *, with_agent: bool) -> tuple[list[str], Callable[[Escalation], str]]:
    """The lines before the first row (the CSV header) and the function making a row's line."""
    if fmt == JSONL:
        return [], lambda case: canonical_json(label_record(case, with_agent=with_agent)) + "\n"
    lines = _CsvLines()
    return [lines.line(CSV_COLUMNS)], lambda case: lines.line(csv_row(case))


def is_asgi(request: HttpRequest) -> bool:
    """Whether the request came through ASGI (a DRF Request wraps the Django one)."""
    return isinstance(getattr(request, "_request", request), ASGIRequest)


def stream(
    request: HttpRequest,
    cases: QuerySet[Escalation],
    fmt: str,
    *,
    filename: str = "labels",
    with_agent: bool = False,
) -> StreamingHttpResponse:
    """Every label among `cases` (already limited to what the caller may see), streamed as
    JSON Lines or CSV, oldest resolution first."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    cases = labels_of(cases)
    head, make_line = _line_maker(fmt, with_agent=with_agent)

    def lines_after(position) -> tuple[list[str], tuple | None]:
        rows, last = label_batch(cases, position, BATCH)
        return [make_line(case) for case in rows], last

    def sync_lines() -> Iterator[str]:
        yield from head
        position = None
        while True:
            lines, position = lines_after(position)
            yield from lines
            if position is None:
                return

    async def async_lines() -> AsyncIterator[str]:
        for line in head:
            yield line
        position = None
        while True:
            lines, position = await sync_to_async(lines_after)(position)
            for line in lines:
                yield line
            if position is None:
                return

    content = async_lines() if is_asgi(request) else sync_lines()
    response = StreamingHttpResponse(content, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response
