"""On PostgreSQL, refuse UPDATE and DELETE on the audit table with a trigger that fires even
for replication sessions (ENABLE ALWAYS). TRUNCATE is a separate privilege and stays with the
database owner (test databases are flushed that way)."""

from django.db import migrations

from escalation.migrations._helpers import postgresql_only

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


class Migration(migrations.Migration):
    dependencies = [("escalation", "0001_initial")]

    operations = [postgresql_only(FORWARD, BACKWARD)]
