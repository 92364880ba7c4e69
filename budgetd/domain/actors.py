"""Who makes a management change: a stable fingerprint of a credential, never the credential.

A fingerprint is ``<kind>:`` and the first 16 hex digits of the SHA-256 of the secret, e.g.
``token:9f86d081884c7d65`` for budgetd's admin token or ``key:…`` for a gateway's API key. It
names the same credential across restarts and replicas and reveals nothing of a long random
secret (a short, guessable one could be found by trying candidates: use random keys).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# What a forwarded actor may look like: a fingerprint, so a secret cannot be stored by mistake.
FINGERPRINT = re.compile(r"[a-z][a-z0-9_-]{0,15}:[0-9a-f]{16}\Z")


@dataclass(frozen=True, slots=True)
class Actor:
    """The author of a change, as the audit trail records it."""

    principal: str  # a fingerprint, or "anonymous" / "internal"
    via: str | None = None  # the fingerprint of the credential that vouched for ``principal``


# Callers inside the process (tests, seeding scripts); transports always name their caller.
INTERNAL = Actor("internal")
# A caller presenting no credential to a budgetd that requires none.
ANONYMOUS = Actor("anonymous")


def fingerprint(secret: str, kind: str) -> str:
    """``kind:`` plus the first 16 hex digits of sha256(secret)."""
    return f"{kind}:{hashlib.sha256(secret.encode()).hexdigest()[:16]}"
