"""Initial schema: users, tracks, deliveries, detections.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

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
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("platform_user_id", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("mode IN ('lift', 'match')", name=op.f("ck_users_mode")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint(
            "platform", "platform_user_id", name=op.f("uq_users_platform_platform_user_id")
        ),
    )
    op.create_table(
        "tracks",
        sa.Column("id", sa.String(length=22), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("artist", sa.String(length=300), nullable=False),
        sa.Column("album", sa.String(length=300), nullable=True),
        sa.Column("release_date", sa.String(length=10), nullable=True),
        sa.Column("popularity", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("danceability", sa.Float(), nullable=False),
        sa.Column("energy", sa.Float(), nullable=False),
        sa.Column("valence", sa.Float(), nullable=False),
        sa.Column("acousticness", sa.Float(), nullable=False),
        sa.Column("instrumentalness", sa.Float(), nullable=False),
        sa.Column("liveness", sa.Float(), nullable=False),
        sa.Column("speechiness", sa.Float(), nullable=False),
        sa.Column("loudness", sa.Float(), nullable=False),
        sa.Column("tempo", sa.Float(), nullable=False),
        sa.Column("key", sa.Integer(), nullable=False),
        sa.Column("mode", sa.Integer(), nullable=True),
        sa.Column("time_signature", sa.Integer(), nullable=False),
        sa.Column("mood", sa.String(length=16), nullable=True),
        sa.Column("mood_source", sa.String(length=8), nullable=True),
        sa.Column("mood_confidence", sa.Float(), nullable=True),
        sa.Column("mood_model_version", sa.String(length=64), nullable=True),
        sa.Column("art_url", sa.String(length=500), nullable=True),
        sa.Column("art_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "mood IN ('calm', 'happy', 'energetic', 'sad')", name=op.f("ck_tracks_mood")
        ),
        sa.CheckConstraint("mood_source IN ('label', 'model')", name=op.f("ck_tracks_mood_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracks")),
    )
    op.create_index(op.f("ix_tracks_mood"), "tracks", ["mood"], unique=False)
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.String(length=22), nullable=False),
        sa.Column("emotion", sa.String(length=16), nullable=True),
        sa.Column("mood", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("round >= 1", name=op.f("ck_deliveries_round")),
        sa.ForeignKeyConstraint(
            ["track_id"],
            ["tracks.id"],
            name=op.f("fk_deliveries_track_id_tracks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_deliveries_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "user_id", "track_id", "round", name=op.f("uq_deliveries_user_id_track_id_round")
        ),
    )
    op.create_index(
        "ix_deliveries_user_id_mood_round",
        "deliveries",
        ["user_id", "mood", "round"],
        unique=False,
    )
    op.create_index(op.f("ix_deliveries_track_id"), "deliveries", ["track_id"], unique=False)
    op.create_table(
        "detections",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("emotion", sa.String(length=16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_detections_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_detections")),
    )


def downgrade() -> None:
    op.drop_table("detections")
    op.drop_index(op.f("ix_deliveries_track_id"), table_name="deliveries")
    op.drop_index("ix_deliveries_user_id_mood_round", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index(op.f("ix_tracks_mood"), table_name="tracks")
    op.drop_table("tracks")
    op.drop_table("users")
