"""Drop the audit table's single-column indexes of case and queue: audit_case_idx
(escalation, seq) and the two queue indexes lead with the same columns. Each is one more index
entry per event, written while the chain head is held. Only the indexes are dropped, as in
0014: letting Django alter the foreign keys would drop and re-validate their constraints."""

import django.db.models.deletion
from django.db import migrations, models

from escalation.migrations._helpers import drop_index

DROPPED = {
    "escalation_auditevent_escalation_id_4a1f117b": '("escalation_id")',
    "escalation_auditevent_queue_id_36c54033": '("queue_id")',
}


def _unindexed_foreign_key(name: str, to: str, related_name: str) -> migrations.AlterField:
    """The event's nullable foreign key `name`, now without an index."""
    return migrations.AlterField(
        model_name="auditevent",
        name=name,
        field=models.ForeignKey(
            blank=True,
            db_index=False,
            null=True,
            on_delete=django.db.models.deletion.PROTECT,
            related_name=related_name,
            to=to,
        ),
    )


class Migration(migrations.Migration):
    dependencies = [("escalation", "0015_audit_seal_at_commit")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                drop_index("escalation_auditevent", name, columns)
                for name, columns in DROPPED.items()
            ],
            state_operations=[
                _unindexed_foreign_key("escalation", "escalation.escalation", "audit_events"),
                _unindexed_foreign_key("queue", "escalation.queue", "+"),
            ],
        ),
    ]
