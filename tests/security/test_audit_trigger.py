"""The audit table's append-only trigger is enabled ALWAYS, so it also fires for sessions in
replica mode (how an owner would slip past an ordinary trigger); tampering itself — edits,
deletions, reordering, a truncated tail, a rewritten chain — is caught by the chain and the
checkpoint in tests/escalation/test_audit.py."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from escalation import transitions
from escalation.models import AuditEvent
from tests.support import TRIGGER

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's"),
]


def test_the_trigger_is_enabled_always():
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = %s", [TRIGGER])
        assert cursor.fetchall() == [("A",)]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE escalation_auditevent SET actor_name = 'mallory'",
        "DELETE FROM escalation_auditevent",
    ],
)
def test_a_replica_mode_session_cannot_change_audit_rows_either(case, as_alice, statement):
    transitions.claim(actor=as_alice, case_id=case.pk)
    count = AuditEvent.objects.count()

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(statement)

    assert AuditEvent.objects.count() == count
    assert not AuditEvent.objects.filter(actor_name="mallory").exists()
