"""Covering indexes for the shot search: the time and campaign indexes of ``ingest_shots``
also hold the row id and collection (the search's order and access filter), the summary
indexes of ``ingest_shot_signals`` the shot row, so counting thousands of matching shots
reads indexes only (SQLite: 88 -> see BENCHMARKS.md, "Shot search").

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SHOTS = {
    "ix_ingest_shots_time": (
        "ix_ingest_shots_latest",
        ["latest", "acquired_us", "id", "collection"],
    ),
    "ix_ingest_shots_campaign": (
        "ix_ingest_shots_campaign_latest",
        ["campaign", "latest", "acquired_us", "id", "collection"],
    ),
}
_SIGNALS = {
    f"ix_ingest_shot_signals_{s}": (f"ix_ingest_shot_signals_{s}_row", s)
    for s in ("max", "min", "mean")
}


def upgrade() -> None:
    for old, (new, columns) in _SHOTS.items():
        op.drop_index(old, table_name="ingest_shots")
        op.create_index(new, "ingest_shots", columns)
    for old, (new, stat) in _SIGNALS.items():
        op.drop_index(old, table_name="ingest_shot_signals")
        op.create_index(new, "ingest_shot_signals", ["signal", stat, "shot_row"])


def downgrade() -> None:
    for old, (new, stat) in _SIGNALS.items():
        op.drop_index(new, table_name="ingest_shot_signals")
        op.create_index(old, "ingest_shot_signals", ["signal", stat])
    op.drop_index("ix_ingest_shots_latest", table_name="ingest_shots")
    op.create_index("ix_ingest_shots_time", "ingest_shots", ["latest", "acquired_us"])
    op.drop_index("ix_ingest_shots_campaign_latest", table_name="ingest_shots")
    op.create_index(
        "ix_ingest_shots_campaign", "ingest_shots", ["campaign", "latest", "acquired_us"]
    )
