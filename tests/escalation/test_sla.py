from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from escalation import sla

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_6 = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
ALWAYS_OPEN = {day: [["00:00", "24:00"]] for day in sla.WEEKDAYS}


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def office() -> sla.Calendar:
    return sla.Calendar.parse("Europe/Berlin", WEEKDAYS_9_TO_6, [])


# --- add_working_time without a calendar ---------------------------------------------------


def test_without_calendar_target_is_plain_addition():
    assert sla.add_working_time(utc(2026, 1, 9, 17, 55), 600) == utc(2026, 1, 9, 18, 5)


def test_without_calendar_result_is_utc_and_counts_real_elapsed_time_across_dst():
    # 01:30 CET + 1 h of real time is 03:30 CEST, not the wall-clock 02:30.
    due = sla.add_working_time(berlin(2025, 3, 30, 1, 30), 3600)
    assert due.tzinfo is UTC
    assert due == utc(2025, 3, 30, 1, 30)
    assert due.astimezone(BERLIN) == berlin(2025, 3, 30, 3, 30)


def test_zero_seconds_is_the_start_itself(office):
    start = berlin(2026, 1, 10, 12, 0)  # a Saturday, outside working hours
    assert sla.add_working_time(start, 0, office) == start


def test_naive_start_is_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        sla.add_working_time(datetime(2026, 1, 9, 12, 0), 60)


def test_negative_seconds_are_rejected():
    with pytest.raises(ValueError, match="negative"):
        sla.add_working_time(utc(2026, 1, 9), -1)


# --- add_working_time with a business-hours calendar ---------------------------------------


def test_friday_evening_claim_target_rolls_to_monday_morning(office):
    due = sla.add_working_time(berlin(2026, 1, 9, 17, 55), 600, office)
    assert due == berlin(2026, 1, 12, 9, 5)
    assert due.tzinfo is UTC
    assert due == utc(2026, 1, 12, 8, 5)


def test_start_given_in_utc_gives_the_same_due_time(office):
    due = sla.add_working_time(utc(2026, 1, 9, 16, 55), 600, office)
    assert due == utc(2026, 1, 12, 8, 5)


def test_friday_evening_target_rolls_over_the_spring_dst_weekend(office):
    due = sla.add_working_time(berlin(2025, 3, 28, 17, 55), 600, office)
    assert due == utc(2025, 3, 31, 7, 5)
    assert due.astimezone(BERLIN) == berlin(2025, 3, 31, 9, 5)
    assert due.astimezone(BERLIN).utcoffset() == timedelta(hours=2)


def test_always_open_calendar_counts_the_repeated_autumn_hour():
    calendar = sla.Calendar.parse("Europe/Berlin", ALWAYS_OPEN, [])
    start = berlin(2025, 10, 25, 12, 0)  # CEST, 10:00 UTC
    due = sla.add_working_time(start, 24 * 3600, calendar)
    assert due == utc(2025, 10, 26, 10, 0)
    # The local clock shows only 23 hours later because 02:00-03:00 happened twice.
    assert due.astimezone(BERLIN) == berlin(2025, 10, 26, 11, 0)


def test_night_window_on_the_autumn_change_day_holds_seven_hours():
    calendar = sla.Calendar.parse("Europe/Berlin", {"sun": [["00:00", "06:00"]]}, [])
    start = berlin(2025, 10, 26, 0, 0)
    assert sla.add_working_time(start, 7 * 3600, calendar) == utc(2025, 10, 26, 5, 0)
    # One second more no longer fits and rolls to the next Sunday's window.
    assert sla.add_working_time(start, 7 * 3600 + 1, calendar) == utc(2025, 11, 1, 23, 0, 1)


def test_night_window_on_the_spring_change_day_holds_five_hours():
    calendar = sla.Calendar.parse("Europe/Berlin", {"sun": [["00:00", "06:00"]]}, [])
    start = berlin(2025, 3, 30, 0, 0)
    assert sla.add_working_time(start, 5 * 3600, calendar) == utc(2025, 3, 30, 4, 0)
    assert sla.add_working_time(start, 5 * 3600 + 1, calendar) == utc(2025, 4, 5, 22, 0, 1)


def test_window_opening_inside_the_spring_gap_opens_at_the_transition():
    calendar = sla.Calendar.parse("Europe/Berlin", {"sun": [["02:30", "06:00"]]}, [])
    day = date(2025, 3, 30)
    assert calendar.intervals_on(day) == [(utc(2025, 3, 30, 1, 0), utc(2025, 3, 30, 4, 0))]


def test_window_at_midnight_that_does_not_exist_starts_when_the_day_starts():
    # Chile springs forward at local midnight: Sunday 2025-09-07 begins at 01:00.
    calendar = sla.Calendar.parse("America/Santiago", {"sun": [["00:00", "24:00"]]}, [])
    (opens, closes), *_ = calendar.intervals_on(date(2025, 9, 7))
    assert opens == utc(2025, 9, 7, 4, 0)
    assert closes - opens == timedelta(hours=23)


def test_holidays_are_skipped():
    calendar = sla.Calendar.parse("Europe/Berlin", WEEKDAYS_9_TO_6, ["2026-01-12"])
    due = sla.add_working_time(berlin(2026, 1, 9, 17, 55), 600, calendar)
    assert due == berlin(2026, 1, 13, 9, 5)


def test_start_before_opening_counts_from_opening(office):
    due = sla.add_working_time(berlin(2026, 1, 12, 7, 0), 600, office)
    assert due == berlin(2026, 1, 12, 9, 10)


def test_start_on_a_weekend_counts_from_monday_opening(office):
    due = sla.add_working_time(berlin(2026, 1, 10, 12, 0), 600, office)
    assert due == berlin(2026, 1, 12, 9, 10)


def test_start_exactly_at_closing_counts_from_next_opening(office):
    due = sla.add_working_time(berlin(2026, 1, 9, 18, 0), 600, office)
    assert due == berlin(2026, 1, 12, 9, 10)


def test_target_ending_exactly_at_closing_is_due_at_closing(office):
    due = sla.add_working_time(berlin(2026, 1, 9, 17, 50), 600, office)
    assert due == berlin(2026, 1, 9, 18, 0)


def test_target_spanning_several_days_counts_only_working_hours(office):
    # 24 h of work on 9-hour days: all of Monday and Tuesday, then 6 hours on Wednesday.
    due = sla.add_working_time(berlin(2026, 1, 5, 9, 0), 24 * 3600, office)
    assert due == berlin(2026, 1, 7, 15, 0)


def test_lunch_break_between_intervals_is_not_counted():
    calendar = sla.Calendar.parse(
        "Europe/Berlin", {"mon": [["13:00", "17:00"], ["09:00", "12:00"]]}, []
    )
    due = sla.add_working_time(berlin(2026, 1, 5, 11, 55), 600, calendar)
    assert due == berlin(2026, 1, 5, 13, 5)


def test_fractional_seconds_are_kept(office):
    due = sla.add_working_time(berlin(2026, 1, 5, 9, 0), 1.5, office)
    assert due == berlin(2026, 1, 5, 9, 0) + timedelta(seconds=1.5)


def test_time_that_cannot_be_placed_within_the_search_bound_raises():
    calendar = sla.Calendar.parse("Europe/Berlin", ALWAYS_OPEN, [])
    with pytest.raises(ValueError, match="cannot place"):
        sla.add_working_time(utc(2026, 1, 1), 10 * 366 * 86400, calendar)


# --- due_times -----------------------------------------------------------------------------


def test_due_times_count_both_targets_and_their_risk_points_from_entry():
    entered = utc(2026, 1, 9, 12, 0)
    due = sla.due_times(entered, "normal", {})
    assert due.claim_due_at == entered + timedelta(hours=1)
    assert due.resolve_due_at == entered + timedelta(hours=8)
    assert due.claim_risk_at == entered + timedelta(minutes=45)
    assert due.resolve_risk_at == entered + timedelta(hours=6)


def test_at_risk_is_at_three_quarters_of_the_target_in_business_time(office):
    # 2 minutes of Friday are left; the rest of each target is counted from Monday 09:00.
    due = sla.due_times(berlin(2026, 1, 9, 17, 58), "urgent", None, office)
    assert due.claim_risk_at == berlin(2026, 1, 12, 9, 1, 45)  # 225 s of 300 s
    assert due.claim_due_at == berlin(2026, 1, 12, 9, 3)
    assert due.resolve_risk_at == berlin(2026, 1, 12, 9, 20, 30)  # 1350 s of 1800 s
    assert due.resolve_due_at == berlin(2026, 1, 12, 9, 28)


def test_due_times_use_the_queue_policy_over_defaults():
    entered = utc(2026, 1, 9, 12, 0)
    due = sla.due_times(entered, "high", {"high": {"claim": 60}})
    assert due.claim_due_at == entered + timedelta(seconds=60)
    assert due.resolve_due_at == entered + timedelta(seconds=7200)


def test_due_times_reject_an_unknown_priority():
    with pytest.raises(ValueError, match="unknown priority"):
        sla.due_times(utc(2026, 1, 9), "critical", {})


# --- sla_state -----------------------------------------------------------------------------


RISK = utc(2026, 1, 9, 12, 45)
DUE = utc(2026, 1, 9, 13, 0)
TICK = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (RISK - TICK, "ok"),
        (RISK, "at_risk"),
        (DUE - TICK, "at_risk"),
        (DUE, "breached"),
        (DUE + timedelta(days=1), "breached"),
    ],
)
def test_sla_state_turns_at_risk_then_breached_at_the_exact_instants(now, expected):
    assert sla.sla_state(now, RISK, DUE) == expected


def test_sla_state_is_ok_without_a_due_time():
    assert sla.sla_state(DUE + timedelta(days=1), RISK, None) == "ok"


def test_sla_state_without_a_risk_time_goes_straight_to_breached():
    assert sla.sla_state(DUE - TICK, None, DUE) == "ok"
    assert sla.sla_state(DUE, None, DUE) == "breached"


# --- normalize_policy and targets ----------------------------------------------------------


def test_missing_policy_means_the_defaults():
    assert sla.normalize_policy(None) == sla.DEFAULT_POLICY
    assert sla.normalize_policy({}) == sla.DEFAULT_POLICY
    assert sla.DEFAULT_POLICY["urgent"] == {"claim": 300, "resolve": 1800}
    assert sla.DEFAULT_POLICY["low"] == {"claim": 14400, "resolve": 86400}


def test_partial_policy_is_filled_from_defaults_without_changing_them():
    policy = sla.normalize_policy({"urgent": {"claim": 120}, "low": {"resolve": 172800}})
    assert policy["urgent"] == {"claim": 120, "resolve": 1800}
    assert policy["low"] == {"claim": 14400, "resolve": 172800}
    assert policy["high"] == {"claim": 900, "resolve": 7200}
    assert sla.DEFAULT_POLICY["urgent"]["claim"] == 300


def test_claim_equal_to_resolve_is_allowed():
    assert sla.normalize_policy({"high": {"claim": 600, "resolve": 600}})["high"]["claim"] == 600


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (["urgent"], "object keyed by priority"),
        ({"critical": {"claim": 60}}, "unknown priority"),
        ({"urgent": 60}, "must be an object"),
        ({"urgent": {"ack": 60}}, "unknown target"),
        ({"urgent": {"claim": 60.0}}, "integer"),
        ({"urgent": {"claim": "60"}}, "integer"),
        ({"urgent": {"claim": True}}, "integer"),
        ({"urgent": {"claim": 0}}, "positive"),
        ({"urgent": {"resolve": -5}}, "positive"),
        ({"urgent": {"claim": 600, "resolve": 300}}, "exceeds resolve"),
        ({"urgent": {"claim": 3600}}, "exceeds resolve"),  # against the default resolve of 1800
    ],
)
def test_bad_policy_is_rejected_with_a_one_line_reason(policy, reason):
    with pytest.raises(ValueError, match=reason) as excinfo:
        sla.normalize_policy(policy)
    assert "\n" not in str(excinfo.value)


def test_targets_are_read_from_the_normalized_policy():
    assert sla.targets({"normal": {"claim": 1200}}, "normal") == (1200, 28800)
    assert sla.targets(None, "urgent") == (300, 1800)


def test_targets_reject_an_unknown_priority():
    with pytest.raises(ValueError, match="unknown priority"):
        sla.targets({}, "critical")


# --- Calendar.parse ------------------------------------------------------------------------


def test_calendar_parses_zone_hours_and_holidays():
    calendar = sla.Calendar.parse(
        "Europe/Berlin",
        {"mon": [["13:00", "17:00"], ["09:00", "12:00"]], "sat": [["22:00", "24:00"]], "sun": []},
        ["2026-12-25"],
    )
    assert calendar.tz == BERLIN
    assert calendar.weekly == {
        0: ((time(9), time(12)), (time(13), time(17))),
        5: ((time(22), None),),
    }
    assert calendar.holidays == frozenset({date(2026, 12, 25)})


def test_calendar_allows_touching_intervals():
    calendar = sla.Calendar.parse("UTC", {"mon": [["09:00", "12:00"], ["12:00", "24:00"]]}, [])
    assert calendar.weekly[0] == ((time(9), time(12)), (time(12), None))


@pytest.mark.parametrize(
    ("timezone", "weekly_hours", "holidays", "reason"),
    [
        ("Mars/Olympus_Mons", WEEKDAYS_9_TO_6, [], "unknown time zone"),
        ("", WEEKDAYS_9_TO_6, [], "IANA name"),
        ("Europe/Berlin", {"mon": [["9:00", "18:00"]]}, [], "bad time"),
        ("Europe/Berlin", {"mon": [["09:00", "25:00"]]}, [], "bad time"),
        ("Europe/Berlin", {"mon": [["09:60", "18:00"]]}, [], "bad time"),
        ("Europe/Berlin", {"mon": [["09:00", "24:30"]]}, [], "24:00 only as an end"),
        ("Europe/Berlin", {"mon": [["24:00", "24:00"]]}, [], "24:00 only as an end"),
        ("Europe/Berlin", {"mon": [[9, 18]]}, [], "bad time"),
        ("Europe/Berlin", {"mon": [["18:00", "09:00"]]}, [], "end after it starts"),
        ("Europe/Berlin", {"mon": [["09:00", "09:00"]]}, [], "end after it starts"),
        ("Europe/Berlin", {"mon": [["09:00", "13:00"], ["12:00", "18:00"]]}, [], "overlap"),
        ("Europe/Berlin", {"mon": [["09:00", "24:00"], ["10:00", "11:00"]]}, [], "overlap"),
        ("Europe/Berlin", {"mon": [["09:00"]]}, [], "pair"),
        ("Europe/Berlin", {"mon": "09:00-18:00"}, [], "list of"),
        ("Europe/Berlin", {"monday": [["09:00", "18:00"]]}, [], "unknown weekday"),
        ("Europe/Berlin", {}, [], "no working hours"),
        ("Europe/Berlin", {"mon": [], "tue": []}, [], "no working hours"),
        ("Europe/Berlin", WEEKDAYS_9_TO_6, ["2026-13-01"], "bad holiday"),
        ("Europe/Berlin", WEEKDAYS_9_TO_6, ["25.12.2026"], "bad holiday"),
        ("Europe/Berlin", WEEKDAYS_9_TO_6, [20261225], "bad holiday"),
        ("Europe/Berlin", WEEKDAYS_9_TO_6, "2026-12-25", "list of ISO dates"),
    ],
)
def test_bad_calendar_is_rejected_with_a_one_line_reason(timezone, weekly_hours, holidays, reason):
    with pytest.raises(ValueError, match=reason) as excinfo:
        sla.Calendar.parse(timezone, weekly_hours, holidays)
    assert "\n" not in str(excinfo.value)
