"""PostgreSQL: audit events are chained when their transaction commits, not when recorded.

record() inserts a write's events into escalation_auditpending, which takes no lock. A
deferred constraint trigger on that table runs at COMMIT: it locks the chain head, numbers and
hashes the transaction's pending events in order (sha256 of the parts audit._hash_parts
prepared, around the previous hash and the number), inserts them into the audit table, moves
the head and deletes them from the pending table. So the head is held only for that trigger
and the commit's WAL flush, inside PostgreSQL; before, it was held from the event's INSERT
through every later statement of the transaction and the client's round trips to COMMIT, and
reviewers queued on it (bench/RESULTS.md: on average 3.7 of 8 reviewers were waiting for it).

The pending table is UNLOGGED: a row lives only inside its own transaction, so it never needs
to survive a crash, and its writes cost no WAL. Each row carries its transaction's id, and the
seal takes only its own. Both triggers fire even for replication sessions
(ENABLE ALWAYS), like the audit table's append-only trigger (0002).

`SET CONSTRAINTS escalation_audit_seal IMMEDIATE` seals at the end of each statement instead
(tests that run inside a transaction that never commits do that). SQLite keeps chaining in
Python (escalation.audit._append): its IMMEDIATE transactions serialize every writer anyway.
"""

from django.db import migrations

from escalation.migrations._helpers import postgresql_only

FORWARD = r"""
CREATE UNLOGGED TABLE escalation_auditpending (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at timestamptz NOT NULL,
    actor_kind varchar(10) NOT NULL,
    actor_user_id integer,
    actor_agent_id bigint,
    actor_name varchar(150) NOT NULL,
    verb varchar(64) NOT NULL,
    escalation_id uuid,
    queue_id bigint,
    data text NOT NULL,
    before_prev text NOT NULL,
    before_seq text NOT NULL,
    after_seq text NOT NULL
);
-- The seal reads its own transaction's rows by this index: a scan of the table would also
-- walk every row deleted since the last vacuum, and every write deletes what it inserts.
CREATE INDEX escalation_auditpending_tx ON escalation_auditpending (tx, id);

CREATE FUNCTION handoff_audit_seal() RETURNS trigger AS $$
BEGIN
    -- The first firing in a transaction seals all of its pending events; the others find
    -- their row gone.
    PERFORM 1 FROM escalation_auditpending WHERE id = NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO escalation_auditchainhead (id, seq, hash) VALUES (1, 0, repeat('0', 64))
        ON CONFLICT (id) DO NOTHING;
    WITH RECURSIVE
    head AS (SELECT seq, hash FROM escalation_auditchainhead WHERE id = 1 FOR UPDATE),
    item AS (
        SELECT p.*, row_number() OVER (ORDER BY p.id) AS n
        FROM escalation_auditpending p WHERE p.tx = pg_current_xact_id()
    ),
    chain AS (
        SELECT 0::bigint AS n, seq, hash::text, NULL::text AS prev_hash FROM head
        UNION ALL
        SELECT item.n, chain.seq + 1,
               encode(sha256(convert_to(item.before_prev || chain.hash || item.before_seq
                                        || (chain.seq + 1)::text || item.after_seq, 'UTF8')),
                      'hex'),
               chain.hash
        FROM chain JOIN item ON item.n = chain.n + 1
    ),
    inserted AS (
        INSERT INTO escalation_auditevent (seq, created_at, actor_kind, actor_user_id,
            actor_agent_id, actor_name, verb, escalation_id, queue_id, data, prev_hash, hash)
        SELECT chain.seq, item.created_at, item.actor_kind, item.actor_user_id,
               item.actor_agent_id, item.actor_name, item.verb, item.escalation_id,
               item.queue_id, item.data::jsonb, chain.prev_hash, chain.hash
        FROM chain JOIN item ON item.n = chain.n
    ),
    moved AS (
        UPDATE escalation_auditchainhead SET seq = last.seq, hash = last.hash
        FROM (SELECT seq, hash FROM chain ORDER BY n DESC LIMIT 1) AS last
        WHERE escalation_auditchainhead.id = 1
    )
    DELETE FROM escalation_auditpending WHERE id IN (SELECT id FROM item);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER escalation_audit_seal
    AFTER INSERT ON escalation_auditpending
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION handoff_audit_seal();
ALTER TABLE escalation_auditpending ENABLE ALWAYS TRIGGER escalation_audit_seal;
"""

BACKWARD = """
DROP TABLE IF EXISTS escalation_auditpending;
DROP FUNCTION IF EXISTS handoff_audit_seal();
"""


class Migration(migrations.Migration):
    dependencies = [("escalation", "0014_case_drop_redundant_indexes")]

    operations = [postgresql_only(FORWARD, BACKWARD)]
