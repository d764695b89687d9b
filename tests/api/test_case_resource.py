"""The case resource: case_resource() renders a case exactly as EscalationSerializer does (its
compiled form reads the attributes directly), in every state a case can be in."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from escalation import transitions
from escalation.api.serializers import EscalationSerializer, case_resource
from escalation.audit import Actor
from escalation.models import Escalation
from tests.api.helpers import resolve_case
from tests.factories import make_case

pytestmark = pytest.mark.django_db


def assert_renders_as_drf(case: Escalation) -> dict:
    case = Escalation.objects.select_related("queue", "resolution").get(pk=case.pk)
    ours, drf = case_resource(case), EscalationSerializer(case).data
    assert list(ours.items()) == list(drf.items())  # the same keys, in order, and values
    return ours


def test_open_claimed_resolved_and_cancelled_cases_render_as_drf_does(agent, refunds, alice):
    bare = make_case(agent=agent, queue=refunds, proposed_action=None, context={})
    assert assert_renders_as_drf(bare)["proposed_action"] is None
    claimed = make_case(agent=agent, queue=refunds, external_id="x-1", metadata={"n": [1, 2.5]})
    transitions.claim(actor=Actor.for_user(alice), case_id=claimed.pk)
    assert assert_renders_as_drf(claimed)["status"] == "claimed"
    resolved = make_case(agent=agent, queue=refunds)
    resolve_case(resolved, alice, decision="modify", final_action={"type": "refund", "n": 1})
    resource = assert_renders_as_drf(resolved)
    assert resource["resolution"]["decision"] == "modify"
    assert resource["created_at"].endswith("Z") and uuid.UUID(resource["id"]) == resolved.pk
    cancelled = make_case(agent=agent, queue=refunds)
    transitions.cancel(actor=Actor.for_agent(agent), case_id=cancelled.pk, reason="dup")
    assert assert_renders_as_drf(cancelled)["cancel_reason"] == "dup"


def test_values_of_other_types_go_through_their_field(agent, refunds):
    # What the database never returns but code may set: an int confidence, a number summary.
    case = make_case(agent=agent, queue=refunds)
    case = Escalation.objects.select_related("queue").get(pk=case.pk)
    case.confidence = 1
    case.summary = 42
    case.updated_at = timezone.now()
    ours, drf = case_resource(case), EscalationSerializer(case).data
    assert ours == drf
    assert ours["confidence"] == 1.0 and type(ours["confidence"]) is float
    assert ours["summary"] == "42"
