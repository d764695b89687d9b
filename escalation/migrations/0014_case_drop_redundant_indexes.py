"""Drop four indexes of the case table that no query needs: the single-column indexes of agent
and queue (case_agent_status_idx and case_queue_status_idx lead with the same columns) and the
two of reason (never filtered on). Each index is one more write per create, claim and
decision. Only the indexes are dropped: letting Django alter the foreign keys would drop and
re-validate their constraints over the whole table."""

import django.db.models.deletion
from django.db import migrations, models

from escalation.migrations._helpers import drop_index

DROPPED = {
    "escalation_escalation_agent_id_de6b19e2": '("agent_id")',
    "escalation_escalation_queue_id_5bf54e62": '("queue_id")',
    "escalation_escalation_reason_f5b7258e": '("reason")',
}


def _unindexed_foreign_key(name: str) -> migrations.AlterField:
    """The case's foreign key `name` (to the model of that name), now without an index."""
    return migrations.AlterField(
        model_name="escalation",
        name=name,
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.PROTECT,
            related_name="cases",
            to=f"escalation.{name}",
        ),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("escalation", "0013_inbox_queue_urgency_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                *(drop_index("escalation_escalation", name, cols) for name, cols in DROPPED.items()),
                # PostgreSQL only: the LIKE index a SlugField gets there.
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "escalation_escalation_reason_f5b7258e_like"',
                    migrations.RunSQL.noop,
                ),
            ],
            state_operations=[
                _unindexed_foreign_key("agent"),
                _unindexed_foreign_key("queue"),
                migrations.AlterField(
                    model_name="escalation",
                    name="reason",
                    field=models.SlugField(blank=True, db_index=False, max_length=64),
                ),
            ],
        ),
    ]
