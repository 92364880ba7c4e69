"""The error family of budgetd's domain.

Errors are named after the condition, never after a transport's status code; each transport maps
them once (gRPC in ``budgetd.api.status``)::

    BudgetdError
    ├── InvalidArgument      a field of the request is malformed (names the field)
    ├── NotFound             a named customer, tier or reservation does not exist
    ├── AlreadyExists        a create collides with an existing id
    ├── FailedPrecondition   the request is well-formed but the state forbids it
    ├── Unauthenticated      no or wrong credentials
    └── Unavailable          the store cannot be reached; the call may be retried
        └── DeadlineExceeded the call's deadline passed before the store could answer

A denied Authorize is not an error: it is a normal decision.
"""

from __future__ import annotations


class BudgetdError(Exception):
    """Base of every error budgetd raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(BudgetdError):
    """A request field is malformed; ``field`` names it (dotted path)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(BudgetdError):
    """A named entity does not exist."""


class AlreadyExists(BudgetdError):
    """A create names an id that is taken."""


class FailedPrecondition(BudgetdError):
    """The request is valid but the current state forbids it."""


class Unauthenticated(BudgetdError):
    """Credentials are missing or wrong."""


class Unavailable(BudgetdError):
    """The store is unreachable or overloaded; safe to retry."""


class DeadlineExceeded(Unavailable):
    """The call's deadline passed before its store work could finish (or start)."""
