"""Budget windows: when a customer's spend starts again from zero.

A window rule is a duration in LiteLLM's forms ("30s", "30m", "30h", "1d", "7d", "30d", "1mo",
"3mo") plus an alignment:

- **anniversary** — windows follow each other from an anchor (the customer's first call):
  ``[anchor + k·d, anchor + (k+1)·d)``. Months keep the anchor's day of month, clamped to short
  months (an anchor on the 31st gives Feb 28/29, then Mar 31).
- **calendar** — windows are fixed on the wall clock of a time zone, as LiteLLM does: "1d" from
  midnight to midnight, "7d" from Monday 00:00, "1mo" from the 1st, "Nd"/"Nmo" every N days or
  months counted from a fixed origin; "s"/"m"/"h" durations from midnight in steps of the
  duration, cut at the next midnight ("30m" → :00 and :30, "8h" → 00:00, 08:00, 16:00).

Days and months are wall-clock units of the zone, so a "1d" window across a DST change lasts 23
or 25 hours; seconds, minutes and hours are absolute. All times are integer microseconds since
the Unix epoch.
"""

from __future__ import annotations

import calendar
import enum
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from budgetd.errors import InvalidArgument
from budgetd.validation import check_duration

US = 1_000_000
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"^([1-9][0-9]{0,5})(s|m|h|d|mo)$")
# date(1, 1, 1) is a Monday: counting whole days from it puts "7d" windows on Mondays.
_MONDAY_ORDINAL = date(1, 1, 1).toordinal()


class Alignment(enum.Enum):
    """How windows are placed in time."""

    ANNIVERSARY = "anniversary"
    CALENDAR = "calendar"


@dataclass(frozen=True, slots=True)
class Duration:
    """A window length: ``count`` of ``unit`` (s, m, h, d or mo)."""

    count: int
    unit: str

    @classmethod
    def parse(cls, text: str, field: str = "budget_duration") -> Duration:
        """Parse LiteLLM's duration form; InvalidArgument naming ``field`` otherwise."""
        match = _DURATION.match(text)
        if not match:
            raise InvalidArgument(field, f"must look like 30s, 30m, 30h, 1d or 1mo, got {text!r}")
        check_duration(text, field)
        return cls(int(match.group(1)), match.group(2))


def zone(name: str, field: str = "time_zone") -> ZoneInfo:
    """An IANA time zone ("UTC" when empty)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidArgument(field, f"unknown time zone {name!r}") from exc


@dataclass(frozen=True, slots=True)
class WindowRule:
    """Where the windows of one budget fall."""

    duration: Duration
    alignment: Alignment = Alignment.ANNIVERSARY
    tz: ZoneInfo = ZoneInfo("UTC")  # noqa: RUF009 - ZoneInfo instances are immutable and cached

    def window_at(self, now_us: int, anchor_us: int) -> tuple[int, int]:
        """The window ``[start, end)`` that contains ``now_us``."""
        unit = self.duration.unit
        if self.alignment is Alignment.CALENDAR:
            if unit in _UNIT_SECONDS:
                return self._calendar_clock(now_us)
            if unit == "d":
                return self._calendar_days(now_us)
            return self._calendar_months(now_us)
        if unit in _UNIT_SECONDS:
            length = self.duration.count * _UNIT_SECONDS[unit] * US
            start = anchor_us + (now_us - anchor_us) // length * length
            return start, start + length
        return self._anniversary_wall_clock(now_us, anchor_us)

    # -- calendar ------------------------------------------------------------------------

    def _calendar_clock(self, now_us: int) -> tuple[int, int]:
        local = _local(now_us, self.tz)
        midnight = _to_us(datetime.combine(local.date(), time(), self.tz))
        next_midnight = _to_us(datetime.combine(local.date() + timedelta(days=1), time(), self.tz))
        length = self.duration.count * _UNIT_SECONDS[self.duration.unit] * US
        start = midnight + (now_us - midnight) // length * length
        return start, min(start + length, next_midnight)

    def _calendar_days(self, now_us: int) -> tuple[int, int]:
        n = self.duration.count
        ordinal = _local(now_us, self.tz).date().toordinal()
        first = _MONDAY_ORDINAL + (ordinal - _MONDAY_ORDINAL) // n * n
        return self._midnight(first), self._midnight(first + n)

    def _calendar_months(self, now_us: int) -> tuple[int, int]:
        n = self.duration.count
        local = _local(now_us, self.tz)
        index = (local.year * 12 + local.month - 1) // n * n
        return self._first_of_month(index), self._first_of_month(index + n)

    def _midnight(self, ordinal: int) -> int:
        return _to_us(datetime.combine(date.fromordinal(ordinal), time(), self.tz))

    def _first_of_month(self, month_index: int) -> int:
        year, month0 = divmod(month_index, 12)
        return _to_us(datetime(year, month0 + 1, 1, tzinfo=self.tz))

    # -- anniversary in days or months ---------------------------------------------------

    def _anniversary_wall_clock(self, now_us: int, anchor_us: int) -> tuple[int, int]:
        anchor = _local(anchor_us, self.tz)
        n = self.duration.count
        if self.duration.unit == "d":
            # A first guess from absolute time, then corrected for DST drift by one step.
            k = (now_us - anchor_us) // (n * 86_400 * US)
        else:
            now = _local(now_us, self.tz)
            k = ((now.year - anchor.year) * 12 + now.month - anchor.month) // n
        while self._nth(anchor, k) > now_us:
            k -= 1
        while self._nth(anchor, k + 1) <= now_us:
            k += 1
        return self._nth(anchor, k), self._nth(anchor, k + 1)

    def _nth(self, anchor: datetime, k: int) -> int:
        n = self.duration.count
        if self.duration.unit == "d":
            moved = anchor.date() + timedelta(days=k * n)
            return _to_us(datetime.combine(moved, anchor.timetz().replace(tzinfo=None), self.tz))
        year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + k * n, 12)
        day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
        return _to_us(anchor.replace(year=year, month=month0 + 1, day=day))


def _local(us: int, tz: ZoneInfo) -> datetime:
    seconds, micros = divmod(us, US)
    return datetime.fromtimestamp(seconds, tz).replace(microsecond=micros)


def _to_us(moment: datetime) -> int:
    utc = moment.astimezone(UTC)
    return calendar.timegm(utc.utctimetuple()) * US + utc.microsecond
