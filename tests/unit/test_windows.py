"""Budget windows (pure): every duration form rolls exactly at its boundary, in both alignments.

"Exactly" means: one microsecond before the boundary is still the old window, the boundary itself
is the new one. Month ends, leap years and DST changes in Europe/Berlin are covered; a property
checks that every window contains the instant it was asked for and is the same window seen from
its first and last microsecond.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetd.domain.windows import Alignment, Duration, WindowRule
from budgetd.errors import InvalidArgument

US = 1_000_000
HOUR = 3600 * US
DAY = 24 * HOUR
BERLIN = ZoneInfo("Europe/Berlin")
ANN = Alignment.ANNIVERSARY
CAL = Alignment.CALENDAR


def at(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    micro: int = 0,
    tz: ZoneInfo | None = None,
) -> int:
    """Microseconds since the epoch of a wall-clock time (UTC unless ``tz``)."""
    moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz or UTC)
    return int(moment.timestamp()) * US + moment.microsecond


def rule(duration: str, alignment: Alignment = ANN, tz: ZoneInfo | None = None) -> WindowRule:
    return WindowRule(Duration.parse(duration), alignment, tz or ZoneInfo("UTC"))


def assert_rolls_at(rule_: WindowRule, anchor: int, boundary: int, old_start: int, new_end: int):
    """1 µs before ``boundary`` is [old_start, boundary); ``boundary`` is [boundary, new_end)."""
    assert rule_.window_at(boundary - 1, anchor) == (old_start, boundary)
    assert rule_.window_at(boundary, anchor) == (boundary, new_end)
    # The first microsecond of the old window is in it too.
    assert rule_.window_at(old_start, anchor) == (old_start, boundary)


# -- every duration form, anniversary ------------------------------------------------------------

# An anchor with an odd time of day and microseconds, so nothing lines up by accident.
ANCHOR = at(2024, 3, 10, 13, 45, 7, 250_000)


@pytest.mark.parametrize(
    ("duration", "step"),
    [
        ("30s", 30 * US),
        ("30m", 30 * 60 * US),
        ("30h", 30 * HOUR),
        ("1d", DAY),
        ("7d", 7 * DAY),
        ("30d", 30 * DAY),
    ],
)
def test_anniversary_windows_of_fixed_length_roll_at_the_anchor_plus_k_steps(
    duration: str, step: int
) -> None:
    r = rule(duration)
    # The first window starts at the anchor itself.
    assert r.window_at(ANCHOR, ANCHOR) == (ANCHOR, ANCHOR + step)
    for k in (1, 2, 5):
        boundary = ANCHOR + k * step
        assert_rolls_at(r, ANCHOR, boundary, boundary - step, boundary + step)


@pytest.mark.parametrize(
    ("duration", "boundary", "new_end"),
    [
        ("1mo", at(2024, 4, 10, 13, 45, 7, 250_000), at(2024, 5, 10, 13, 45, 7, 250_000)),
        ("3mo", at(2024, 6, 10, 13, 45, 7, 250_000), at(2024, 9, 10, 13, 45, 7, 250_000)),
    ],
)
def test_anniversary_month_windows_keep_the_anchors_day_and_time(
    duration: str, boundary: int, new_end: int
) -> None:
    assert_rolls_at(rule(duration), ANCHOR, boundary, ANCHOR, new_end)


# -- every duration form, calendar ---------------------------------------------------------------

# Wednesday 2024-03-13 10:17:42 UTC; the anchor does not matter for calendar windows.
NOW = at(2024, 3, 13, 10, 17, 42, 123)


@pytest.mark.parametrize(
    ("duration", "old_start", "boundary", "new_end"),
    [
        # From midnight in steps of the duration.
        ("30s", at(2024, 3, 13, 10, 17, 30), at(2024, 3, 13, 10, 18), at(2024, 3, 13, 10, 18, 30)),
        ("30m", at(2024, 3, 13, 10), at(2024, 3, 13, 10, 30), at(2024, 3, 13, 11)),
        # Longer than a day: cut at the next midnight, so every day starts a window.
        ("30h", at(2024, 3, 13), at(2024, 3, 14), at(2024, 3, 15)),
        ("1d", at(2024, 3, 13), at(2024, 3, 14), at(2024, 3, 15)),
        # Monday 00:00.
        ("7d", at(2024, 3, 11), at(2024, 3, 18), at(2024, 3, 25)),
        # Every 30 days from a fixed origin (0001-01-01, a Monday).
        ("30d", at(2024, 2, 15), at(2024, 3, 16), at(2024, 4, 15)),
        # The 1st of the month; quarters for "3mo".
        ("1mo", at(2024, 3, 1), at(2024, 4, 1), at(2024, 5, 1)),
        ("3mo", at(2024, 1, 1), at(2024, 4, 1), at(2024, 7, 1)),
    ],
)
def test_calendar_windows_roll_on_the_wall_clock(
    duration: str, old_start: int, boundary: int, new_end: int
) -> None:
    r = rule(duration, CAL)
    assert r.window_at(NOW, ANCHOR) == (old_start, boundary)
    assert_rolls_at(r, ANCHOR, boundary, old_start, new_end)
    # Another anchor gives the same calendar windows.
    assert r.window_at(NOW, 0) == (old_start, boundary)


def test_calendar_7d_windows_start_on_monday() -> None:
    r = rule("7d", CAL)
    for day in range(1, 32):
        start, end = r.window_at(at(2024, 12, day, 12), 0)
        assert datetime.fromtimestamp(start / US, UTC).weekday() == 0  # Monday
        assert datetime.fromtimestamp(start / US, UTC).time() == datetime.min.time()
        assert end - start == 7 * DAY


def test_calendar_hours_that_do_not_divide_a_day_are_cut_at_midnight() -> None:
    r = rule("7h", CAL)
    assert r.window_at(at(2024, 3, 13, 20), 0) == (at(2024, 3, 13, 14), at(2024, 3, 13, 21))
    # The last window of the day is 3 hours long: 21:00 to midnight.
    assert r.window_at(at(2024, 3, 13, 23, 59), 0) == (at(2024, 3, 13, 21), at(2024, 3, 14))
    assert r.window_at(at(2024, 3, 14), 0) == (at(2024, 3, 14), at(2024, 3, 14, 7))


def test_calendar_month_rolls_into_the_next_year() -> None:
    r = rule("1mo", CAL)
    assert_rolls_at(r, 0, at(2025, 1, 1), at(2024, 12, 1), at(2025, 2, 1))


# -- month ends ----------------------------------------------------------------------------------


def test_anniversary_month_anchored_on_the_31st_clamps_to_short_months_and_comes_back() -> None:
    anchor = at(2023, 1, 31, 12)
    r = rule("1mo")
    # 2023 is no leap year: Jan 31 -> Feb 28 -> Mar 31 -> Apr 30 -> May 31.
    assert_rolls_at(r, anchor, at(2023, 2, 28, 12), anchor, at(2023, 3, 31, 12))
    assert_rolls_at(r, anchor, at(2023, 3, 31, 12), at(2023, 2, 28, 12), at(2023, 4, 30, 12))
    assert_rolls_at(r, anchor, at(2023, 4, 30, 12), at(2023, 3, 31, 12), at(2023, 5, 31, 12))


def test_anniversary_month_in_a_leap_year_uses_february_29() -> None:
    anchor = at(2024, 1, 31, 12)
    r = rule("1mo")
    assert_rolls_at(r, anchor, at(2024, 2, 29, 12), anchor, at(2024, 3, 31, 12))
    assert_rolls_at(r, anchor, at(2024, 3, 31, 12), at(2024, 2, 29, 12), at(2024, 4, 30, 12))


def test_anniversary_anchored_on_february_29_keeps_the_29th_when_it_exists() -> None:
    anchor = at(2024, 2, 29, 8)
    yearly = rule("12mo")
    assert_rolls_at(yearly, anchor, at(2025, 2, 28, 8), anchor, at(2026, 2, 28, 8))
    # Four years on, February has its 29th again.
    assert yearly.window_at(at(2028, 3, 1), anchor) == (at(2028, 2, 29, 8), at(2029, 2, 28, 8))
    monthly = rule("1mo")
    assert monthly.window_at(at(2024, 3, 29, 8), anchor) == (
        at(2024, 3, 29, 8),
        at(2024, 4, 29, 8),
    )


def test_calendar_month_covers_short_and_leap_februaries_whole() -> None:
    r = rule("1mo", CAL)
    assert_rolls_at(r, 0, at(2023, 3, 1), at(2023, 2, 1), at(2023, 4, 1))
    assert_rolls_at(r, 0, at(2024, 3, 1), at(2024, 2, 1), at(2024, 4, 1))
    # Jan 31 -> Feb 1 is a boundary; Feb 29 of a leap year is inside February.
    assert_rolls_at(r, 0, at(2024, 2, 1), at(2024, 1, 1), at(2024, 3, 1))
    assert r.window_at(at(2024, 2, 29, 23, 59, 59, 999_999), 0) == (at(2024, 2, 1), at(2024, 3, 1))


def test_calendar_day_rolls_from_the_31st_to_the_1st() -> None:
    assert_rolls_at(rule("1d", CAL), 0, at(2024, 2, 1), at(2024, 1, 31), at(2024, 2, 2))
    assert_rolls_at(rule("1d", CAL), 0, at(2024, 3, 1), at(2024, 2, 29), at(2024, 3, 2))


# -- DST in Europe/Berlin (2024: spring forward on Mar 31, fall back on Oct 27) ------------------


def test_calendar_day_is_23_hours_on_the_spring_forward_day() -> None:
    r = rule("1d", CAL, BERLIN)
    start = at(2024, 3, 31, tz=BERLIN)
    end = at(2024, 4, 1, tz=BERLIN)
    assert end - start == 23 * HOUR
    assert start == at(2024, 3, 30, 23)  # 00:00 CET is 23:00 UTC
    assert end == at(2024, 3, 31, 22)  # 00:00 CEST is 22:00 UTC
    assert_rolls_at(r, 0, start, at(2024, 3, 30, tz=BERLIN), end)
    assert_rolls_at(r, 0, end, start, at(2024, 4, 2, tz=BERLIN))


def test_calendar_day_is_25_hours_on_the_fall_back_day() -> None:
    r = rule("1d", CAL, BERLIN)
    start = at(2024, 10, 27, tz=BERLIN)
    end = at(2024, 10, 28, tz=BERLIN)
    assert end - start == 25 * HOUR
    # The repeated hour (02:00-03:00 twice) is inside the same window.
    assert r.window_at(at(2024, 10, 27, 0, 30), 0) == (start, end)  # 02:30 CEST
    assert r.window_at(at(2024, 10, 27, 1, 30), 0) == (start, end)  # 02:30 CET
    assert_rolls_at(r, 0, end, start, at(2024, 10, 29, tz=BERLIN))


def test_calendar_week_and_month_across_dst_start_at_local_midnight() -> None:
    week = rule("7d", CAL, BERLIN)
    monday = at(2024, 3, 25, tz=BERLIN)
    next_monday = at(2024, 4, 1, tz=BERLIN)
    assert next_monday - monday == 7 * DAY - HOUR
    assert_rolls_at(week, 0, next_monday, monday, at(2024, 4, 8, tz=BERLIN))
    month = rule("1mo", CAL, BERLIN)
    assert_rolls_at(
        month, 0, at(2024, 4, 1, tz=BERLIN), at(2024, 3, 1, tz=BERLIN), at(2024, 5, 1, tz=BERLIN)
    )


def test_calendar_clock_windows_follow_local_midnight_across_dst() -> None:
    r = rule("30m", CAL, BERLIN)
    # 03:00 CEST, right after the jump, is a boundary (it is 01:00 UTC, 2 h after midnight CET).
    jump = at(2024, 3, 31, 3, tz=BERLIN)
    assert_rolls_at(r, 0, jump, jump - 30 * 60 * US, jump + 30 * 60 * US)


def test_anniversary_day_keeps_its_wall_clock_time_across_dst() -> None:
    r = rule("1d", ANN, BERLIN)
    anchor = at(2024, 3, 30, 12, tz=BERLIN)  # 12:00 CET = 11:00 UTC
    spring = at(2024, 3, 31, 12, tz=BERLIN)  # 12:00 CEST = 10:00 UTC
    assert spring - anchor == 23 * HOUR
    assert_rolls_at(r, anchor, spring, anchor, at(2024, 4, 1, 12, tz=BERLIN))
    # In autumn the day with the extra hour is 25 hours long, still 12:00 to 12:00.
    autumn_start = at(2024, 10, 26, 12, tz=BERLIN)
    autumn_end = at(2024, 10, 27, 12, tz=BERLIN)
    assert autumn_end - autumn_start == 25 * HOUR
    assert_rolls_at(r, anchor, autumn_end, autumn_start, at(2024, 10, 28, 12, tz=BERLIN))
    # A week from the anchor is the same wall-clock time, one hour short in absolute time.
    week = rule("7d", ANN, BERLIN)
    assert week.window_at(anchor, anchor) == (anchor, at(2024, 4, 6, 12, tz=BERLIN))
    assert at(2024, 4, 6, 12, tz=BERLIN) - anchor == 7 * DAY - HOUR


def test_anniversary_hours_are_absolute_across_dst() -> None:
    r = rule("30h", ANN, BERLIN)
    anchor = at(2024, 3, 30, 12, tz=BERLIN)
    assert r.window_at(anchor + 30 * HOUR, anchor) == (anchor + 30 * HOUR, anchor + 60 * HOUR)


def test_anniversary_day_anchored_in_an_hour_dst_skips_moves_past_the_gap() -> None:
    # 02:30 does not exist on Mar 31 in Berlin: that day's window starts at 03:30 CEST.
    r = rule("1d", ANN, BERLIN)
    anchor = at(2024, 3, 30, 2, 30, tz=BERLIN)
    start, end = r.window_at(at(2024, 3, 31, 12, tz=BERLIN), anchor)
    assert start == at(2024, 3, 31, 1, 30)  # 03:30 CEST
    assert end == at(2024, 4, 1, 2, 30, tz=BERLIN)


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["30s", "30m", "30h", "1d", "7d", "30d", "1mo", "3mo", "1200mo"])
def test_litellm_duration_forms_parse(text: str) -> None:
    parsed = Duration.parse(text)
    assert f"{parsed.count}{parsed.unit}" == text


@pytest.mark.parametrize("text", ["", "0d", "1w", "1 d", "-1d", "1.5h", "d", "1D", "01d"])
def test_malformed_durations_are_invalid_arguments_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument, match="budget_duration"):
        Duration.parse(text)


@pytest.mark.parametrize("text", ["1201mo", "30000mo", "999999mo"])
def test_durations_too_long_to_compute_are_refused(text: str) -> None:
    # They used to be accepted and then crashed every Authorize with "year out of range".
    with pytest.raises(InvalidArgument, match="budget_duration"):
        Duration.parse(text)


# -- property ------------------------------------------------------------------------------------

ZONES = [
    ZoneInfo(name)
    for name in (
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",  # a 30-minute DST shift
        "Asia/Kolkata",  # a half-hour offset
        "America/Sao_Paulo",  # DST changed at midnight until 2019
    )
]
LOW = at(1971, 1, 1)
HIGH = at(2100, 1, 1)


@st.composite
def rules(draw: st.DrawFn) -> WindowRule:
    unit = draw(st.sampled_from(["s", "m", "h", "d", "mo"]))
    top = {"s": 100_000, "m": 5000, "h": 100, "d": 400, "mo": 1200}[unit]
    count = draw(st.one_of(st.sampled_from([1, 3, 7, 30]), st.integers(1, top)))
    return WindowRule(
        Duration(count, unit), draw(st.sampled_from([ANN, CAL])), draw(st.sampled_from(ZONES))
    )


@settings(max_examples=400, deadline=None)
@given(rule_=rules(), now=st.integers(LOW, HIGH), anchor=st.integers(LOW, HIGH))
def test_every_window_contains_now_and_is_the_same_from_its_first_and_last_microsecond(
    rule_: WindowRule, now: int, anchor: int
) -> None:
    start, end = rule_.window_at(now, anchor)
    assert start <= now < end
    assert rule_.window_at(start, anchor) == (start, end)
    assert rule_.window_at(end - 1, anchor) == (start, end)
    # Windows follow each other without gaps or overlaps.
    assert rule_.window_at(end, anchor)[0] == end


@settings(max_examples=200, deadline=None)
@given(
    rule_=rules(),
    anchor=st.integers(LOW, HIGH),
    offsets=st.lists(st.integers(0, 400 * DAY), min_size=2, max_size=6),
)
def test_windows_never_go_backwards_as_time_moves_forward(
    rule_: WindowRule, anchor: int, offsets: list[int]
) -> None:
    instants = sorted(anchor + o for o in offsets)
    windows = [rule_.window_at(t, anchor) for t in instants]
    assert windows == sorted(windows)
    for (s1, e1), (s2, e2) in itertools.pairwise(windows):
        assert (s1, e1) == (s2, e2) or s2 >= e1


def test_a_day_in_the_property_zones_is_never_shorter_than_22_hours() -> None:
    # Sanity of the test data: every zone above changes by at most an hour.
    for tz in ZONES:
        r = rule("1d", CAL, tz)
        t = at(2024, 1, 1)
        for _ in range(400):
            start, end = r.window_at(t, 0)
            assert 22 * HOUR < end - start < 26 * HOUR
            t = end + timedelta(hours=1) // timedelta(microseconds=1)
