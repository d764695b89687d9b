"""On PostgreSQL, refuse UPDATE and DELETE on the audit table with a trigger that fires even
for replication sessions (ENABLE ALWAYS). TRUNCATE is a separate privilege and stays with the
database owner (test databases are flushed that way)."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION handoff_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER escalation_auditevent_append_only
    BEFORE UPDATE OR DELETE ON escalation_auditevent
    FOR EACH ROW EXECUTE FUNCTION handoff_audit_append_only();
ALTER TABLE escalation_auditevent ENABLE ALWAYS TRIGGER escalation_auditevent_append_only;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS escalation_auditevent_append_only ON escalation_auditevent;
DROP FUNCTION IF EXISTS handoff_audit_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("escalation", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
