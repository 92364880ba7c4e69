"""Checks on request fields shared by every transport.

Each check raises ``InvalidArgument`` naming the field, before anything is written.
"""

from __future__ import annotations

import re
import unicodedata

from budgetd.errors import InvalidArgument
from budgetd.money import MAX_NANOS

# Ids are operator-chosen strings (LiteLLM accepts anything). 256 code points fits UUIDs, emails
# and hashed ids with room to spare, and keeps indexes small.
MAX_ID_LENGTH = 256
MAX_NAME_LENGTH = 1024
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
REGIONS = frozenset({"eu", "us"})
_DURATION = re.compile(r"^[1-9][0-9]{0,5}(s|m|h|d|mo)$")
MAX_DURATION_MONTHS = 1200


def require_id(value: str, field: str) -> str:
    """An id: 1 to MAX_ID_LENGTH characters, no control characters, stored verbatim."""
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(field, f"is longer than {MAX_ID_LENGTH} characters")
    _reject_control_characters(value, field)
    return value


def optional_id(value: str, field: str) -> str | None:
    """An id that may be empty (meaning absent)."""
    return require_id(value, field) if value else None


def check_text(value: str, field: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """Free text such as an alias: bounded length, no control characters."""
    if len(value) > max_length:
        raise InvalidArgument(field, f"is longer than {max_length} characters")
    _reject_control_characters(value, field)
    return value


def check_nanos(value: int, field: str) -> int:
    """A non-negative amount of nano-USD."""
    if value < 0:
        raise InvalidArgument(field, f"must not be negative, got {value}")
    if value > MAX_NANOS:
        raise InvalidArgument(field, "amounts to more than the largest amount (int64 nano-USD)")
    return value


def check_count(value: int, field: str) -> int:
    """A non-negative count (tokens, characters, requests)."""
    if value < 0:
        raise InvalidArgument(field, f"must not be negative, got {value}")
    return value


def check_duration(value: str, field: str) -> str:
    """A LiteLLM budget duration ("30s", "30m", "30h", "1d", "1mo") or empty."""
    if value and not _DURATION.match(value):
        raise InvalidArgument(field, f"must look like 30s, 30m, 30h, 1d or 1mo, got {value[:40]!r}")
    if value.endswith("mo") and int(value[:-2]) > MAX_DURATION_MONTHS:
        # Longer windows end past the calendar datetime can compute (year 9999).
        raise InvalidArgument(field, f"must be at most {MAX_DURATION_MONTHS}mo, got {value!r}")
    return value


def check_region(value: str, field: str) -> str:
    """An allowed model region."""
    if value not in REGIONS:
        raise InvalidArgument(field, f"must be one of {sorted(REGIONS)}, got {value[:40]!r}")
    return value


def check_page_size(value: int, field: str = "page_size") -> int:
    """Page size: 0 means the default."""
    if value < 0 or value > MAX_PAGE_SIZE:
        raise InvalidArgument(field, f"must be between 0 and {MAX_PAGE_SIZE}, got {value}")
    return value or DEFAULT_PAGE_SIZE


def _reject_control_characters(value: str, field: str) -> None:
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidArgument(field, "contains control characters")
