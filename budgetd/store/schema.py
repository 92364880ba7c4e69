"""The tables. Money is BIGINT nano-USD; times are BIGINT microseconds since the epoch (UTC),
which compare and subtract exactly on SQLite and PostgreSQL alike.

Changing this file needs a new Alembic revision in ``budgetd/store/migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Names for constraints so migrations can refer to them on every backend.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")
ID_LENGTH = 256

budgets = Table(
    "budgets",
    metadata,
    Column("budget_id", String(ID_LENGTH), primary_key=True),
    # Private budgets hold a customer's own limits; they are hidden from tier listings.
    Column("is_private", Boolean, nullable=False, default=False),
    Column("max_budget_nanos", BigInteger),
    Column("soft_budget_nanos", BigInteger),
    Column("tpm_limit", BigInteger),
    Column("rpm_limit", BigInteger),
    Column("max_parallel_requests", BigInteger),
    Column("budget_duration", String(16), nullable=False, default=""),
    Column("model_max_budget", Text, nullable=False, default="{}"),  # JSON
    Column("create_request_id", String(ID_LENGTH)),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

customers = Table(
    "customers",
    metadata,
    # A surrogate key: a customer deleted and created again is a new customer, so its old
    # ledger entries (kept for the record) never count toward the new one's spend.
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("user_id", String(ID_LENGTH), nullable=False, unique=True),
    Column("alias", String(1024)),
    Column("blocked", Boolean, nullable=False, default=False),
    Column(
        "budget_id",
        String(ID_LENGTH),
        ForeignKey("budgets.budget_id", ondelete="RESTRICT"),
        index=True,
    ),
    Column("allowed_model_region", String(16)),
    Column("default_model", String(ID_LENGTH)),
    Column("metadata_json", Text, nullable=False, default="{}"),
    Column("spend_nanos", BigInteger, nullable=False, default=0),
    # Sum of this customer's open holds, kept beside spend so Authorize is one conditional UPDATE.
    Column("reserved_nanos", BigInteger, nullable=False, default=0),
    Column("create_request_id", String(ID_LENGTH)),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    # Without AUTOINCREMENT SQLite reuses the id of a deleted row, and a new customer would
    # inherit the old one's ledger entries.
    sqlite_autoincrement=True,
)

HOLD_OPEN = "open"
HOLD_SETTLED = "settled"
HOLD_RELEASED = "released"
HOLD_EXPIRED = "expired"

holds = Table(
    "holds",
    metadata,
    Column("hold_id", String(36), primary_key=True),
    Column(
        "customer_pk",
        BigInteger,
        ForeignKey("customers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("request_id", String(ID_LENGTH)),
    Column("model", String(ID_LENGTH), nullable=False),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("closed_us", BigInteger),
    UniqueConstraint("customer_pk", "request_id"),
    Index("ix_holds_customer_open", "customer_pk", "state", "expires_us"),
    Index("ix_holds_state_expires", "state", "expires_us"),
)

ledger = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", AutoId, primary_key=True, autoincrement=True),
    # No foreign key: entries outlive a deleted customer, as a ledger must.
    Column("customer_pk", BigInteger, nullable=False),
    Column("user_id", String(ID_LENGTH), nullable=False),
    Column("request_id", String(ID_LENGTH), nullable=False, unique=True),
    Column("hold_id", String(36)),
    Column("model", String(ID_LENGTH), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cached_input_tokens", BigInteger, nullable=False),
    Column("cost_nanos", BigInteger, nullable=False),
    Column("spend_after_nanos", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Index("ix_ledger_entries_customer", "customer_pk", "entry_id"),
)
