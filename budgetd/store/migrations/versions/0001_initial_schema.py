"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 18:00:07.717643
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("budget_id", sa.String(length=256), nullable=False),
        sa.Column("is_private", sa.Boolean(), nullable=False),
        sa.Column("max_budget_nanos", sa.BigInteger(), nullable=True),
        sa.Column("soft_budget_nanos", sa.BigInteger(), nullable=True),
        sa.Column("tpm_limit", sa.BigInteger(), nullable=True),
        sa.Column("rpm_limit", sa.BigInteger(), nullable=True),
        sa.Column("max_parallel_requests", sa.BigInteger(), nullable=True),
        sa.Column("budget_duration", sa.String(length=16), nullable=False),
        sa.Column("model_max_budget", sa.Text(), nullable=False),
        sa.Column("create_request_id", sa.String(length=256), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("budget_id", name=op.f("pk_budgets")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column(
            "entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer_pk", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("request_id", sa.String(length=256), nullable=False),
        sa.Column("hold_id", sa.String(length=36), nullable=True),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=False),
        sa.Column("spend_after_nanos", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("request_id", name=op.f("uq_ledger_entries_request_id")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_entries_customer", ["customer_pk", "entry_id"], unique=False
        )

    op.create_table(
        "customers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("alias", sa.String(length=1024), nullable=True),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("budget_id", sa.String(length=256), nullable=True),
        sa.Column("allowed_model_region", sa.String(length=16), nullable=True),
        sa.Column("default_model", sa.String(length=256), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("spend_nanos", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanos", sa.BigInteger(), nullable=False),
        sa.Column("create_request_id", sa.String(length=256), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budgets.budget_id"],
            name=op.f("fk_customers_budget_id_budgets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("user_id", name=op.f("uq_customers_user_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customers_budget_id"), ["budget_id"], unique=False)

    op.create_table(
        "holds",
        sa.Column("hold_id", sa.String(length=36), nullable=False),
        sa.Column("customer_pk", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=256), nullable=True),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.Column("closed_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_pk"],
            ["customers.id"],
            name=op.f("fk_holds_customer_pk_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("hold_id", name=op.f("pk_holds")),
        sa.UniqueConstraint(
            "customer_pk", "request_id", name=op.f("uq_holds_customer_pk_request_id")
        ),
    )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index(
            "ix_holds_customer_open", ["customer_pk", "state", "expires_us"], unique=False
        )
        batch_op.create_index("ix_holds_state_expires", ["state", "expires_us"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_state_expires")
        batch_op.drop_index("ix_holds_customer_open")

    op.drop_table("holds")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_budget_id"))

    op.drop_table("customers")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_customer")

    op.drop_table("ledger_entries")
    op.drop_table("budgets")
