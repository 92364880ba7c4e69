"""Which customer a model call is for, in LiteLLM's order of precedence."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from proxy_shim.errors import UnprocessableField

CUSTOMER_HEADERS = ("x-litellm-customer-id", "x-litellm-end-user-id")
MAX_CUSTOMER_ID_LENGTH = 256


def resolve_customer_id(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The customer id of a call, or None when it names none.

    First match wins: header ``x-litellm-customer-id``, header ``x-litellm-end-user-id``, body
    ``user``, body ``metadata.user_id``. Empty values count as absent (LiteLLM's clients send
    ``"user": ""`` when they have no user). A value of the wrong type or over 256 characters is a
    422 naming where it came from, rather than silently metering to a different customer.
    """
    for name in CUSTOMER_HEADERS:
        value = headers.get(name)
        if value and value.strip():
            return _checked(_utf8(value.strip(), name), name)
    user = body.get("user")
    if user is not None and user != "":
        return _checked(user, "user")
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping):
        user_id = metadata.get("user_id")
        if user_id is not None and user_id != "":
            return _checked(user_id, "metadata.user_id")
    return None


def _checked(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise UnprocessableField(f"{field}: customer id must be a string", param=field)
    if len(value) > MAX_CUSTOMER_ID_LENGTH:
        raise UnprocessableField(
            f"{field}: customer id is longer than {MAX_CUSTOMER_ID_LENGTH} characters", param=field
        )
    if any(unicodedata.category(ch) == "Cc" for ch in value):  # as budgetd's ids
        raise UnprocessableField(f"{field}: customer id contains control characters", param=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnprocessableField(
            f"{field}: customer id is not valid Unicode (it contains a lone surrogate)", param=field
        ) from None
    return value


def _utf8(value: str, field: str) -> str:
    """A header's text: the server hands over its bytes as Latin-1; ids are UTF-8, as in JSON."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise UnprocessableField(f"{field}: customer id is not valid UTF-8", param=field) from None
