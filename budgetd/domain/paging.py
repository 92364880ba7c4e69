"""Opaque page tokens (AIP-158): the last key of a page, encoded so clients don't parse it."""

from __future__ import annotations

import base64
import binascii
import json

from budgetd.errors import InvalidArgument


def encode_token(last_key: str | int) -> str:
    """A token that resumes a listing after ``last_key``."""
    raw = json.dumps({"k": last_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, kind: type[str] | type[int]) -> str | int | None:
    """The key a token resumes after; None for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))["k"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument("page_token", "is not a token this server issued") from exc
    if not isinstance(key, kind) or isinstance(key, bool):
        raise InvalidArgument("page_token", "is not a token this server issued")
    return key
