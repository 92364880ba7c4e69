"""The names of the management changes the audit trail records.

A module of its own, free of store imports, so the shim can offer them (``/audit/logs``'s
``action`` filter) without loading SQLAlchemy and the PostgreSQL driver.
"""

from __future__ import annotations

from typing import Literal

AuditAction = Literal[
    "customer.create",
    "customer.update",
    "customer.change_tier",
    "customer.delete",
    "customer.block",
    "customer.unblock",
    "budget.create",
    "budget.update",
    "budget.delete",
]
