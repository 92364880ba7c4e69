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
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
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
    Column("window_alignment", String(16), nullable=False, default="", server_default=text("''")),
    Column("time_zone", String(64), nullable=False, default="", server_default=text("''")),
    Column("allowed_models", Text, nullable=False, default="[]", server_default=text("'[]'")),
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
    # Unsettled reservations: the calls in flight, for max_parallel_requests.
    Column("open_holds", BigInteger, nullable=False, default=0, server_default=text("0")),
    # The budget window spend counts in; NULL when the budget never resets. The anchor of
    # anniversary windows is the customer's first call under a windowed budget.
    Column("window_start_us", BigInteger),
    Column("window_end_us", BigInteger),
    Column("window_anchor_us", BigInteger),
    # The window in which the soft-budget alert fired, so it fires once per window.
    Column("soft_alert_window_us", BigInteger),
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
    # Where the hold's estimate was counted, so settling corrects the same places.
    Column("window_start_us", BigInteger),
    Column("model_window_start_us", BigInteger),
    Column("tokens", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("rate_second", BigInteger),
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
    Column("window_start_us", BigInteger),
    Column("created_us", BigInteger, nullable=False),
    Index("ix_ledger_entries_customer", "customer_pk", "entry_id"),
)

# Requests and tokens per customer (scope "") or per customer and model (scope = model) in
# one-second buckets: the rolling 60-second rpm/tpm window sums the last 61 of them.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column(
        "customer_pk",
        BigInteger,
        ForeignKey("customers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("scope", String(ID_LENGTH), nullable=False),
    Column("second", BigInteger, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    PrimaryKeyConstraint("customer_pk", "scope", "second"),
    Index("ix_rate_buckets_second", "second"),
)

# Spend of one customer on one model with a model_max_budget cap, in that cap's own window.
model_spend = Table(
    "model_spend",
    metadata,
    Column(
        "customer_pk",
        BigInteger,
        ForeignKey("customers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("model", String(ID_LENGTH), nullable=False),
    Column("spend_nanos", BigInteger, nullable=False, default=0),
    Column("reserved_nanos", BigInteger, nullable=False, default=0),
    Column("window_start_us", BigInteger),
    Column("window_end_us", BigInteger),
    Column("window_anchor_us", BigInteger),
    PrimaryKeyConstraint("customer_pk", "model"),
)

# Soft-budget alerts waiting for delivery: written in the transaction that crossed the
# threshold, posted to the webhook by a background sender, so the call never waits for it.
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", AutoId, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("created_us", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("delivered_us", BigInteger),
    Index("ix_alerts_pending", "delivered_us", "next_attempt_us"),
)

# The audit trail: one row per management change, written in the change's own transaction and
# never updated. ``before_json``/``after_json`` hold the target's settings (NULL for a create or
# a delete); ``actor``/``via`` are credential fingerprints, never secrets.
audit_entries = Table(
    "audit_entries",
    metadata,
    Column("entry_id", AutoId, primary_key=True, autoincrement=True),
    Column("created_us", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("via", String(64)),
    Column("action", String(32), nullable=False),
    Column("target_type", String(16), nullable=False),
    Column("target_id", String(ID_LENGTH), nullable=False),
    Column("before_json", Text),
    Column("after_json", Text),
    Index("ix_audit_entries_target", "target_id", "entry_id"),
    Index("ix_audit_entries_action", "action", "entry_id"),
    # Ids only grow, even if old entries are pruned, so page tokens stay valid.
    sqlite_autoincrement=True,
)
