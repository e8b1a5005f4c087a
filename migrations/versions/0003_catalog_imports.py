"""Catalog imports: one row per catalog source imported in full, so the start-up import knows
which configured sources it still has to import.

A database made before this table gets a row for every source a track names (the rule the
start-up import used until now), with no checksum and no counts: what was imported then is not
known, and those sources are not imported again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_imports",
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("rows_read", sa.Integer(), nullable=True),
        sa.Column("inserted", sa.Integer(), nullable=True),
        sa.Column("updated", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.Integer(), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_catalog_imports")),
    )
    op.execute(
        sa.text(
            "INSERT INTO catalog_imports (source, imported_at) "
            "SELECT source, MAX(imported_at) FROM tracks GROUP BY source"
        )
    )


def downgrade() -> None:
    op.drop_table("catalog_imports")
