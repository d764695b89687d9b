"""Times that arrive as text (query parameters, cursors) become aware UTC datetimes here.

Python accepts UTC offsets up to ±24 h, PostgreSQL only up to ±15:59: a time is converted to
UTC before it reaches a query, so an exotic offset is just another instant, and one that cannot
be shown in UTC (year 1 or 9999 at the edge) is refused like any malformed time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime


def parse_utc(text: str) -> datetime | None:
    """The instant an ISO 8601 time with a zone names, in UTC; None if malformed or zoneless."""
    try:
        parsed = parse_datetime(text) if text else None
        if parsed is None or parsed.tzinfo is None:
            return None
        return parsed.astimezone(UTC)
    except (ValueError, TypeError, OverflowError):  # month 13; no UTC time in years 1..9999
        return None
