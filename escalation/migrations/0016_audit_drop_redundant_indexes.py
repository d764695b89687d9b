"""Drop the audit table's single-column indexes of case and queue: audit_case_idx
(escalation, seq) and the two queue indexes lead with the same columns. Each is one more index
entry per event, written while the chain head is held. Only the indexes are dropped, as in
0014: letting Django alter the foreign keys would drop and re-validate their constraints."""

import django.db.models.deletion
from django.db import migrations, models

DROPPED = {
    "escalation_auditevent_escalation_id_4a1f117b": '("escalation_id")',
    "escalation_auditevent_queue_id_36c54033": '("queue_id")',
}


def _drop(name: str, columns: str) -> migrations.RunSQL:
    return migrations.RunSQL(
        f'DROP INDEX IF EXISTS "{name}"',
        f'CREATE INDEX IF NOT EXISTS "{name}" ON "escalation_auditevent" {columns}',
    )


class Migration(migrations.Migration):
    dependencies = [("escalation", "0015_audit_seal_at_commit")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[_drop(name, columns) for name, columns in DROPPED.items()],
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="escalation",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="audit_events",
                        to="escalation.escalation",
                    ),
                ),
                migrations.AlterField(
                    model_name="auditevent",
                    name="queue",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="escalation.queue",
                    ),
                ),
            ],
        ),
    ]
