"""Job dependencies: who waits for whom, and the time a waiting job asked for

Revision ID: 0017_dependencies
Revises: 0016_batches
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_dependencies"
down_revision = "0016_batches"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "job_dependencies",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("depends_on_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "depends_on_id"),
    )
    op.create_index("ix_job_dependencies_upstream", "job_dependencies",
                    ["depends_on_id", "job_id"])
    # Nullable, no default: no table rewrite, however many jobs there are.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("not_before")
    op.drop_index("ix_job_dependencies_upstream", table_name="job_dependencies")
    op.drop_table("job_dependencies")
