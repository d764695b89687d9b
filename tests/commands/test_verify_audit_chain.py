"""verify_audit_chain: exit 0 with the count when intact; one line naming the bad event if not."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError
from django.db import connection

from escalation import audit, transitions
from escalation.models import AuditEvent
from tests.support import tampering

pytestmark = pytest.mark.django_db


def _tamper(sql: str, params: list) -> None:
    with tampering(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def history(case, as_alice):
    """Three events: created, routed, claimed."""
    transitions.route(case_id=case.pk)
    transitions.claim(actor=as_alice, case_id=case.pk)
    return list(AuditEvent.objects.order_by("seq"))


def test_verify_audit_chain_reports_an_intact_chain_with_its_head(run, history):
    out = run("verify_audit_chain")

    head = history[-1]
    assert out.strip() == f"audit chain intact: 3 events, head 3:{head.hash}"


def test_verify_audit_chain_passes_on_an_empty_log(run, db):
    assert run("verify_audit_chain").startswith("audit chain intact: 0 events, head 0:")


def test_verify_audit_chain_matches_a_checkpoint_from_the_log(run, history):
    checkpoint = f"{history[1].seq}:{history[1].hash}"

    out = run("verify_audit_chain", checkpoint=checkpoint)

    assert out.strip().endswith("; matches checkpoint 2")


def test_verify_audit_chain_fails_naming_the_first_altered_event(run, history):
    _tamper("UPDATE escalation_auditevent SET data = %s WHERE seq = %s", ['{"forged": true}', 2])

    with pytest.raises(CommandError, match="^audit chain broken: event 2 was altered"):
        run("verify_audit_chain")


def test_verify_audit_chain_fails_when_the_checkpoint_no_longer_matches(run, history):
    forged = f"2:{'f' * 64}"

    with pytest.raises(CommandError, match="event 2 does not match the checkpoint hash"):
        run("verify_audit_chain", checkpoint=forged)


@pytest.mark.parametrize("checkpoint", ["latest", "3", "x:abc", "3:abc", f"0:{'a' * 64}"])
def test_verify_audit_chain_refuses_a_malformed_checkpoint(run, checkpoint):
    with pytest.raises(CommandError, match="^--checkpoint: checkpoint"):
        run("verify_audit_chain", checkpoint=checkpoint)


def test_audit_verify_chain_agrees_with_the_command(history):
    # The command is a thin shell over audit.verify_chain: same verdict, same count.
    report = audit.verify_chain()
    assert report.ok and report.checked == len(history)
