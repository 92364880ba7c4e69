"""budget windows, rate limits, model budgets, alerts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 18:14:56.618149
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column(
            "alert_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger(), nullable=False),
        sa.Column("delivered_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alerts_pending", ["delivered_us", "next_attempt_us"], unique=False
        )

    op.create_table(
        "model_spend",
        sa.Column("customer_pk", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("spend_nanos", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanos", sa.BigInteger(), nullable=False),
        sa.Column("window_start_us", sa.BigInteger(), nullable=True),
        sa.Column("window_end_us", sa.BigInteger(), nullable=True),
        sa.Column("window_anchor_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_pk"],
            ["customers.id"],
            name=op.f("fk_model_spend_customer_pk_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_pk", "model", name=op.f("pk_model_spend")),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("customer_pk", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(length=256), nullable=False),
        sa.Column("second", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_pk"],
            ["customers.id"],
            name=op.f("fk_rate_buckets_customer_pk_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_pk", "scope", "second", name=op.f("pk_rate_buckets")),
    )
    with op.batch_alter_table("rate_buckets", schema=None) as batch_op:
        batch_op.create_index("ix_rate_buckets_second", ["second"], unique=False)

    op.add_column(
        "budgets",
        sa.Column(
            "window_alignment",
            sa.String(length=16),
            server_default=sa.text("''"),
            nullable=False,
        ),
    )
    op.add_column(
        "budgets",
        sa.Column("time_zone", sa.String(length=64), server_default=sa.text("''"), nullable=False),
    )
    op.add_column(
        "budgets",
        sa.Column("allowed_models", sa.Text(), server_default=sa.text("'[]'"), nullable=False),
    )

    op.add_column(
        "customers",
        sa.Column("open_holds", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("customers", sa.Column("window_start_us", sa.BigInteger(), nullable=True))
    op.add_column("customers", sa.Column("window_end_us", sa.BigInteger(), nullable=True))
    op.add_column("customers", sa.Column("window_anchor_us", sa.BigInteger(), nullable=True))
    op.add_column("customers", sa.Column("soft_alert_window_us", sa.BigInteger(), nullable=True))

    op.add_column("holds", sa.Column("window_start_us", sa.BigInteger(), nullable=True))
    op.add_column("holds", sa.Column("model_window_start_us", sa.BigInteger(), nullable=True))
    op.add_column(
        "holds", sa.Column("tokens", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("holds", sa.Column("rate_second", sa.BigInteger(), nullable=True))

    op.add_column("ledger_entries", sa.Column("window_start_us", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_column("window_start_us")

    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_column("rate_second")
        batch_op.drop_column("tokens")
        batch_op.drop_column("model_window_start_us")
        batch_op.drop_column("window_start_us")

    # Recreating the table on SQLite must keep AUTOINCREMENT (see schema.py).
    with op.batch_alter_table(
        "customers", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.drop_column("soft_alert_window_us")
        batch_op.drop_column("window_anchor_us")
        batch_op.drop_column("window_end_us")
        batch_op.drop_column("window_start_us")
        batch_op.drop_column("open_holds")

    with op.batch_alter_table("budgets", schema=None) as batch_op:
        batch_op.drop_column("allowed_models")
        batch_op.drop_column("time_zone")
        batch_op.drop_column("window_alignment")

    with op.batch_alter_table("rate_buckets", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_buckets_second")

    op.drop_table("rate_buckets")
    op.drop_table("model_spend")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_pending")

    op.drop_table("alerts")
