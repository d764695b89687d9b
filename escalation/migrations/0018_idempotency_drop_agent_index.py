"""Drop the idempotency table's single-column index of agent: the unique (agent, key) index
leads with the same column. With both, a create's prepared read of its key could settle on a
generic plan made while the table was empty, which took the agent index and filtered every one
of the agent's records: 1.6 ms at 4,000 records, growing with them (auto_explain; PostgreSQL
without autovacuum never re-plans it). Only the index is dropped, as in 0014 and 0016."""

import django.db.models.deletion
from django.db import migrations, models

from escalation.migrations._helpers import drop_index


class Migration(migrations.Migration):
    dependencies = [("escalation", "0017_agent_open_cases_bound")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                drop_index(
                    "escalation_idempotencyrecord",
                    "escalation_idempotencyrecord_agent_id_a25e37fc",
                    '("agent_id")',
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="idempotencyrecord",
                    name="agent",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="escalation.agent",
                    ),
                )
            ],
        ),
    ]
