"""Who is calling: the master key (every route) or a client key (model routes only).

Keys are compared in constant time, every configured key is compared on every call (so timing
does not reveal which kind of key was close), and no key is ever logged or echoed.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable

from fastapi import Request

from proxy_shim.errors import AuthenticationFailed, PermissionDenied


class Role(enum.Enum):
    """What a key may do."""

    MASTER = "master"
    CLIENT = "client"


class KeyRing:
    """The master key and the client keys."""

    def __init__(self, master_key: str, client_keys: Iterable[str] = ()) -> None:
        self._master = master_key.encode()
        self._clients = tuple(key.encode() for key in client_keys)

    def role_of(self, presented: str | None) -> Role:
        """The role of a presented key; AuthenticationFailed if it is none of ours."""
        if not presented:
            raise AuthenticationFailed(
                "No API key passed in. Pass 'Authorization: Bearer <key>'.", param="api_key"
            )
        candidate = presented.encode()
        is_master = hmac.compare_digest(candidate, self._master)
        is_client = False
        for key in self._clients:
            # No short-circuit: the time taken must not depend on which key matched.
            is_client |= hmac.compare_digest(candidate, key)
        if is_master:
            return Role.MASTER
        if is_client:
            return Role.CLIENT
        raise AuthenticationFailed("Invalid proxy API key.", param="api_key")

    def require(self, request: Request, *, admin: bool) -> Role:
        """Authenticate a request; admin routes need the master key."""
        role = self.role_of(bearer_token(request))
        if admin and role is not Role.MASTER:
            raise PermissionDenied("This route needs the master key.", param="api_key")
        return role


def bearer_token(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` (or the bare header value)."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return token.strip() or None
    return header.strip()
