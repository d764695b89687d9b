"""Pure SLA arithmetic: policies, business-hours calendars, due times and at-risk/breach states.

Everything here is a function of its arguments (no ORM, no clock): callers pass `now`.
Storage is UTC; a calendar converts to local wall time only inside `add_working_time`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PRIORITIES = ("urgent", "high", "normal", "low")

DEFAULT_POLICY: dict[str, dict[str, int]] = {
    "urgent": {"claim": 300, "resolve": 1800},
    "high": {"claim": 900, "resolve": 7200},
    "normal": {"claim": 3600, "resolve": 28800},
    "low": {"claim": 14400, "resolve": 86400},
}

AT_RISK_FRACTION = 0.75

TARGET_KINDS = ("claim", "resolve")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Enough to cross any realistic run of holidays, small enough that a bad calendar fails fast.
MAX_SEARCH_DAYS = 5 * 366

_HHMM = re.compile(r"^(\d{2}):(\d{2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def normalize_policy(policy: dict | None) -> dict[str, dict[str, int]]:
    """Return a complete policy, missing priorities/targets taken from DEFAULT_POLICY."""
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        raise ValueError("SLA policy must be an object keyed by priority")
    result = {p: dict(targets) for p, targets in DEFAULT_POLICY.items()}
    for priority, given in policy.items():
        if priority not in PRIORITIES:
            raise ValueError(
                f"unknown priority {priority!r} (expected one of {', '.join(PRIORITIES)})"
            )
        if not isinstance(given, dict):
            raise ValueError(f"{priority}: targets must be an object with 'claim' and/or 'resolve'")
        for kind, seconds in given.items():
            if kind not in TARGET_KINDS:
                raise ValueError(
                    f"{priority}: unknown target {kind!r} (expected 'claim' or 'resolve')"
                )
            # bool is an int subclass; True must not pass as "1 second".
            if isinstance(seconds, bool) or not isinstance(seconds, int):
                raise ValueError(f"{priority}.{kind}: seconds must be an integer, got {seconds!r}")
            if seconds <= 0:
                raise ValueError(f"{priority}.{kind}: seconds must be positive, got {seconds}")
            result[priority][kind] = seconds
    for priority, t in result.items():
        if t["claim"] > t["resolve"]:
            raise ValueError(
                f"{priority}: claim ({t['claim']} s) exceeds resolve ({t['resolve']} s)"
            )
    return result


def targets(policy: dict | None, priority: str) -> tuple[int, int]:
    """(claim_seconds, resolve_seconds) for `priority` under the normalized policy."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    t = normalize_policy(policy)[priority]
    return t["claim"], t["resolve"]


def _parse_interval(day: str, interval: object) -> tuple[time, time | None]:
    """["HH:MM", "HH:MM"] -> (start, end); an end of "24:00" becomes None (midnight)."""
    if not isinstance(interval, list | tuple) or len(interval) != 2:
        raise ValueError(f"{day}: each interval must be a [start, end] pair")
    parts = []
    for value in interval:
        m = _HHMM.match(value) if isinstance(value, str) else None
        if not m or int(m.group(2)) > 59 or int(m.group(1)) > 24:
            raise ValueError(f"{day}: bad time {value!r} (expected 'HH:MM')")
        parts.append((int(m.group(1)), int(m.group(2))))
    (start_h, start_m), (end_h, end_m) = parts
    if start_h == 24 or (end_h == 24 and end_m != 0):
        raise ValueError(f"{day}: bad interval {interval[0]}-{interval[1]} (24:00 only as an end)")
    start = time(start_h, start_m)
    end = None if end_h == 24 else time(end_h, end_m)
    if end is not None and end <= start:
        raise ValueError(f"{day}: interval {interval[0]}-{interval[1]} must end after it starts")
    return start, end


@dataclass(frozen=True)
class Calendar:
    tz: ZoneInfo
    # weekday 0=Mon -> sorted, non-overlapping local intervals; end None means 24:00.
    weekly: dict[int, tuple[tuple[time, time | None], ...]]
    holidays: frozenset[date]

    @classmethod
    def parse(cls, timezone: str, weekly_hours: dict, holidays: list | None) -> Calendar:
        if not isinstance(timezone, str) or not timezone:
            raise ValueError("calendar time zone must be an IANA name such as 'Europe/Berlin'")
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone[:64]!r}") from exc

        if not isinstance(weekly_hours, dict):
            raise ValueError("weekly hours must be an object keyed by mon..sun")
        weekly: dict[int, tuple[tuple[time, time | None], ...]] = {}
        for day, intervals in weekly_hours.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r} (expected one of {', '.join(WEEKDAYS)})")
            if not isinstance(intervals, list | tuple):
                raise ValueError(f"{day}: hours must be a list of [start, end] pairs")
            parsed = sorted((_parse_interval(day, iv) for iv in intervals), key=lambda iv: iv[0])
            for (_, prev_end), (next_start, _) in zip(parsed, parsed[1:], strict=False):
                if prev_end is None or prev_end > next_start:
                    raise ValueError(f"{day}: intervals overlap")
            if parsed:
                weekly[WEEKDAYS.index(day)] = tuple(parsed)
        if not weekly:
            raise ValueError("calendar has no working hours")

        if holidays is None:
            holidays = []
        if not isinstance(holidays, list | tuple):
            raise ValueError("holidays must be a list of ISO dates")
        days: set[date] = set()
        for value in holidays:
            try:
                if not isinstance(value, str) or not _ISO_DATE.match(value):
                    raise ValueError
                days.add(date.fromisoformat(value))
            except ValueError:
                raise ValueError(f"bad holiday {value!r} (expected 'YYYY-MM-DD')") from None
        return cls(tz=tz, weekly=weekly, holidays=frozenset(days))

    def _to_utc(self, day: date, wall: time) -> datetime:
        local = datetime.combine(day, wall, tzinfo=self.tz)
        utc = local.astimezone(UTC)
        if utc.astimezone(self.tz).replace(tzinfo=None) == local.replace(tzinfo=None):
            # Ambiguous times (autumn) take fold=0, the first occurrence: the earlier instant.
            return utc
        # The wall time falls in a spring-forward gap and never happens: the clock reaches it at
        # the transition instant. fold=0 would place it up to a gap's length too late, so search
        # between the two candidate instants for the moment the offset changes.
        before = local.utcoffset()
        lo = int(local.replace(fold=1).timestamp())  # still on the old offset
        hi = int(local.timestamp())  # already on the new offset
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self.tz).utcoffset() == before:
                lo = mid
            else:
                hi = mid
        return datetime.fromtimestamp(hi, UTC)

    def intervals_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """Working intervals of one local date as UTC (start, end) pairs; empty on holidays."""
        if day in self.holidays:
            return []
        result = []
        for start, end in self.weekly.get(day.weekday(), ()):
            start_utc = self._to_utc(day, start)
            if end is None:
                end_utc = self._to_utc(day + timedelta(days=1), time(0))
            else:
                end_utc = self._to_utc(day, end)
            # A window lying wholly inside a spring-forward gap has no length.
            if end_utc > start_utc:
                result.append((start_utc, end_utc))
        return result


def add_working_time(start: datetime, seconds: float, calendar: Calendar | None = None) -> datetime:
    """The aware UTC instant `seconds` of working time after `start`."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    # Convert first: adding a timedelta to a zoneinfo datetime is wall-clock arithmetic and
    # would be an hour off across a DST change.
    cursor = start.astimezone(UTC)
    if calendar is None or seconds == 0:
        return cursor + timedelta(seconds=seconds)
    remaining = float(seconds)
    day = cursor.astimezone(calendar.tz).date()
    for _ in range(MAX_SEARCH_DAYS):
        for opens, closes in calendar.intervals_on(day):
            begin = max(opens, cursor)
            if begin >= closes:
                continue
            available = (closes - begin).total_seconds()
            # `<=` so a target that ends exactly at closing time is due at closing, not next day.
            if remaining <= available:
                return begin + timedelta(seconds=remaining)
            remaining -= available
        day += timedelta(days=1)
    raise ValueError(f"cannot place {seconds} s of working time within {MAX_SEARCH_DAYS} days")


@dataclass(frozen=True)
class DueTimes:
    claim_due_at: datetime
    resolve_due_at: datetime
    claim_risk_at: datetime
    resolve_risk_at: datetime


def due_times(
    entered_at: datetime, priority: str, policy: dict | None, calendar: Calendar | None = None
) -> DueTimes:
    """Due and at-risk instants for a case, all counted from when it entered its queue."""
    claim, resolve = targets(policy, priority)
    return DueTimes(
        claim_due_at=add_working_time(entered_at, claim, calendar),
        resolve_due_at=add_working_time(entered_at, resolve, calendar),
        claim_risk_at=add_working_time(entered_at, claim * AT_RISK_FRACTION, calendar),
        resolve_risk_at=add_working_time(entered_at, resolve * AT_RISK_FRACTION, calendar),
    )


def sla_state(now: datetime, risk_at: datetime | None, due_at: datetime | None) -> str:
    """'breached', 'at_risk' or 'ok' for one target at `now`."""
    if due_at is None:
        return "ok"
    if now >= due_at:
        return "breached"
    if risk_at is not None and now >= risk_at:
        return "at_risk"
    return "ok"
