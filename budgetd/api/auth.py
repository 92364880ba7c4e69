"""Bearer-token check of management calls."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from budgetd.errors import Unauthenticated


class AdminAuth:
    """Checks `authorization: Bearer <token>` metadata against the admin token.

    With no token configured every caller is admitted; the server warns about it at start-up.
    """

    def __init__(self, token: str | None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    @property
    def enabled(self) -> bool:
        """Whether a token is required."""
        return self._expected is not None

    def check(self, metadata: Iterable[Any] | None) -> None:
        """Raise Unauthenticated unless the metadata carries the admin token."""
        if self._expected is None:
            return
        presented = b""
        for key, value in metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else value
                break
        # Constant time, so the token cannot be guessed byte by byte from response times.
        if not hmac.compare_digest(presented, self._expected):
            raise Unauthenticated("missing or wrong admin token (authorization: Bearer ...)")
