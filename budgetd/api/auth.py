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


class GatewayAuth:
    """Checks hot-path calls (Authorize, RecordSpend, ReleaseReservation, the Envoy services)
    against the gateway token; the admin token is accepted too.

    With no gateway token configured every caller is admitted, as before.
    """

    def __init__(self, gateway_token: str | None, admin: AdminAuth) -> None:
        self._gateway = AdminAuth(gateway_token) if gateway_token else None
        self._admin = admin

    @property
    def enabled(self) -> bool:
        """Whether a token is required."""
        return self._gateway is not None

    def check(self, metadata: Iterable[Any] | None) -> None:
        """Raise Unauthenticated unless the metadata carries the gateway or the admin token."""
        if self._gateway is None:
            return
        metadata = tuple(metadata or ())
        # Both comparisons always run (constant time each), so timing tells nothing either.
        gateway_ok = _accepts(self._gateway, metadata)
        admin_ok = self._admin.enabled and _accepts(self._admin, metadata)
        if not (gateway_ok or admin_ok):
            raise Unauthenticated("missing or wrong gateway token (authorization: Bearer ...)")


def _accepts(auth: AdminAuth, metadata: Iterable[Any]) -> bool:
    try:
        auth.check(metadata)
    except Unauthenticated:
        return False
    return True
