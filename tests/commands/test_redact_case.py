"""redact_case: a case's personal data replaced by a marker, audited, the chain still valid."""

from __future__ import annotations

import uuid

import pytest
from django.core.management.base import CommandError

from escalation import audit, transitions
from escalation.models import AuditEvent, ContextUpdate

pytestmark = pytest.mark.django_db


def test_redact_case_replaces_context_and_metadata_and_audits_it(run, case, as_agent):
    transitions.append_context(
        actor=as_agent, case_id=case.pk, note="card 4111", data={"phone": "+44 7700 900123"}
    )

    out = run("redact_case", id=str(case.pk), reason="GDPR erasure request")

    assert out.strip() == f"redacted case {case.pk} (refunds): GDPR erasure request"
    case.refresh_from_db()
    assert case.context["redacted"] is True and case.metadata["redacted"] is True
    assert case.context["reason"] == "GDPR erasure request"
    assert "conversation" not in case.context
    assert case.redacted_at is not None
    update = ContextUpdate.objects.get(escalation=case)
    assert update.note == "" and update.data["redacted"] is True
    event = AuditEvent.objects.order_by("seq").last()
    assert event.verb == "escalation.redacted" and event.actor_name == "system"
    assert event.escalation_id == case.pk
    assert event.data["reason"] == "GDPR erasure request"
    assert audit.verify_chain().ok
    assert run("verify_audit_chain").startswith("audit chain intact")


def test_redact_case_refuses_an_id_that_is_not_a_uuid(run, db):
    with pytest.raises(CommandError, match="is not a case id"):
        run("redact_case", id="42", reason="GDPR")


def test_redact_case_refuses_an_unknown_case(run, db):
    missing = uuid.uuid4()
    with pytest.raises(CommandError, match=f"case {missing}: no such case"):
        run("redact_case", id=str(missing), reason="GDPR")
    assert not AuditEvent.objects.exists()


def test_redact_case_refuses_a_blank_reason(run, case):
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match="a redaction needs a reason"):
        run("redact_case", id=str(case.pk), reason="  ")
    case.refresh_from_db()
    assert case.redacted_at is None and "conversation" in case.context
    assert AuditEvent.objects.count() == events
