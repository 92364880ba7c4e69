"""Who is calling a management RPC, for the audit trail.

The caller is the fingerprint of the bearer token it presented (``token:<16 hex>``). A gateway
that holds the admin token may name its own caller in the ``x-budgetd-actor`` metadata header
(the shim sends ``key:<16 hex>`` of the API key its caller used); budgetd records that as the
actor and the gateway's token as ``via``. The header is believed only from a caller presenting
the admin token: from anyone else (or when budgetd requires no token) it is ignored, so nobody
can pin a change on someone else. It must be a fingerprint, so a gateway cannot store a secret
in the trail by mistake.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from budgetd.api.auth import AdminAuth
from budgetd.domain.actors import ANONYMOUS, FINGERPRINT, Actor, fingerprint
from budgetd.errors import InvalidArgument, Unauthenticated

ACTOR_HEADER = "x-budgetd-actor"


class Actors:
    """Resolves the actor of a call from its metadata."""

    def __init__(self, auth: AdminAuth) -> None:
        self._auth = auth

    def of(self, metadata: Iterable[Any] | None) -> Actor:
        """The actor of a call carrying ``metadata``."""
        items = tuple(metadata or ())
        pairs = [(key, _text(value)) for key, value in items]
        bearer = next((value for key, value in pairs if key == "authorization"), "")
        scheme, _, token = bearer.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            caller = Actor(fingerprint(token.strip(), "token"))
        else:
            caller = ANONYMOUS
        claimed = next((value for key, value in pairs if key == ACTOR_HEADER), "")
        if not claimed or not self._holds_admin_token(items):
            return caller
        if not FINGERPRINT.match(claimed):
            raise InvalidArgument(
                ACTOR_HEADER, "must be a credential fingerprint such as key:<16 hex digits>"
            )
        return Actor(claimed, via=caller.principal)

    def _holds_admin_token(self, metadata: tuple[Any, ...]) -> bool:
        if not self._auth.enabled:
            return False
        try:
            self._auth.check(metadata)
        except Unauthenticated:
            return False
        return True


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
