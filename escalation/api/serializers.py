"""Input and output shapes of the agent API. Inputs reject unknown fields (a typo is never
silently dropped); outputs are the spec's resources."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from escalation import sla
from escalation.models import ContextUpdate, Escalation, Priority, Queue, Status
from escalation.ssrf import validate_callback_url


class StrictSerializer(serializers.Serializer):
    """Unknown fields are a 400 naming them, alongside any other field's error."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": "must be a JSON object"})
        unknown = {name: "unknown field" for name in sorted(set(data) - set(self.fields))}
        try:
            values = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**unknown, **exc.detail}) from None
        if unknown:
            raise serializers.ValidationError(unknown)
        return values


class StrictFloatField(serializers.FloatField):
    """A JSON number only: "0.4" (a string) and true are refused."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string only: numbers are not silently turned into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be a JSON object")
        return data


class CallbackURLField(StrictCharField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value:
            validate_callback_url(value)
        return value


class CreateEscalationSerializer(StrictSerializer):
    queue = StrictCharField(max_length=50)
    summary = StrictCharField(min_length=1, max_length=200)  # surrounding blanks trimmed
    confidence = StrictFloatField(min_value=0.0, max_value=1.0)
    priority = serializers.ChoiceField(choices=Priority.values, default=Priority.NORMAL)
    reason = serializers.RegexField(
        r"^[a-z0-9_-]{0,64}$",
        required=False,
        default="",
        allow_blank=True,
        error_messages={"invalid": "must be a slug like low_confidence"},
    )
    context = JSONObjectField()
    proposed_action = JSONObjectField(required=False, allow_null=True, default=None)
    external_id = StrictCharField(max_length=255, required=False, default="", allow_blank=True)
    metadata = JSONObjectField(required=False, default=dict)
    callback_url = CallbackURLField(max_length=2000, required=False, default="", allow_blank=True)
    agent_version = StrictCharField(max_length=100, required=False, default="", allow_blank=True)


class ContextUpdateInputSerializer(StrictSerializer):
    note = StrictCharField(
        max_length=10_000, required=False, default="", allow_blank=True, trim_whitespace=False
    )
    data = JSONObjectField(required=False, default=dict)


class CancelInputSerializer(StrictSerializer):
    reason = StrictCharField(max_length=500, required=False, default="", allow_blank=True)


class ResolutionSerializer(serializers.Serializer):
    decision = serializers.CharField()
    final_action = serializers.JSONField(allow_null=True)
    labels = serializers.JSONField()
    note = serializers.CharField()
    resolved_by = serializers.CharField(source="resolved_by.username")
    resolved_at = serializers.DateTimeField()


class EscalationSerializer(serializers.ModelSerializer):
    """The case resource."""

    queue = serializers.CharField(source="queue.slug")
    resolution = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Escalation
        fields = [
            "id",
            "status",
            "queue",
            "priority",
            "confidence",
            "summary",
            "reason",
            "context",
            "proposed_action",
            "external_id",
            "metadata",
            "agent_version",
            "created_at",
            "updated_at",
            "claim_due_at",
            "resolve_due_at",
            "claim_breached_at",
            "resolve_breached_at",
            "expires_at",
            "cancel_reason",
            "resolution",
            "url",
        ]

    def get_resolution(self, case: Escalation) -> dict | None:
        if case.status != Status.RESOLVED:
            return None
        return ResolutionSerializer(case.resolution).data

    def get_url(self, case: Escalation) -> str:
        return case_url(case)


def case_url(case: Escalation) -> str:
    return f"{settings.HANDOFF_PUBLIC_URL.rstrip('/')}/api/v1/escalations/{case.pk}"


def compiled_representation(serializer: serializers.Serializer) -> Callable[[Any], dict]:
    """serializer.to_representation as a function of the instance that reads each attribute
    directly and leaves a value its field would return unchanged as it is (a string, a float,
    a JSON value); every other value goes through its field. For a serializer of plain
    attributes and SerializerMethodFields; DRF's generic walk took a fifth of a batch create."""
    steps: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any] | None]] = []
    for field in serializer._readable_fields:
        if isinstance(field, serializers.SerializerMethodField):
            steps.append((field.field_name, getattr(serializer, field.method_name), None))
            continue
        read = operator.attrgetter(".".join(field.source_attrs))
        if type(field) is serializers.JSONField and not field.binary:
            convert = None  # returned as it is
        elif type(field) in _UNCHANGED:
            convert = functools.partial(_unchanged_or, _UNCHANGED[type(field)], field)
        else:
            convert = field.to_representation
        steps.append((field.field_name, read, convert))

    def represent(instance) -> dict:
        result = {}
        for name, read, convert in steps:
            value = read(instance)
            result[name] = value if convert is None or value is None else convert(value)
        return result

    return represent


# Field classes whose to_representation returns a value of exactly this type as it is.
_UNCHANGED: dict[type[serializers.Field], type] = {
    serializers.CharField: str,
    serializers.FloatField: float,
}


def _unchanged_or(same_type: type, field: serializers.Field, value):
    return value if type(value) is same_type else field.to_representation(value)


@functools.cache
def _render_case() -> Callable[[Escalation], dict]:
    # Built once: building a serializer's fields costs more than rendering a case with them,
    # and rendering keeps nothing on the serializer.
    return compiled_representation(EscalationSerializer())


def case_resource(case: Escalation) -> dict:
    return _render_case()(case)


class ContextUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = ContextUpdate
        fields = ["id", "note", "data", "created_at"]


class QueueSerializer(serializers.ModelSerializer):
    sla = serializers.SerializerMethodField()

    class Meta:
        model = Queue
        fields = [
            "slug",
            "name",
            "sla",
            "calendar",
            "lease_seconds",
            "expire_after_seconds",
            "label_schema",
        ]

    def get_sla(self, queue: Queue) -> dict:
        policy = sla.normalize_policy(queue.sla_policy)
        return {
            priority: {
                "claim_seconds": policy[priority]["claim"],
                "resolve_seconds": policy[priority]["resolve"],
            }
            for priority in sla.PRIORITIES
        }


class LabelSerializer(serializers.Serializer):
    """What a resolution teaches: the input, the agent's output, the human decision."""

    def to_representation(self, case: Escalation) -> dict:
        resolution = case.resolution
        return {
            "id": str(case.pk),
            "queue": case.queue.slug,
            "external_id": case.external_id,
            "created_at": serializers.DateTimeField().to_representation(case.created_at),
            "input": {
                "summary": case.summary,
                "reason": case.reason,
                "context": case.context,
                "metadata": case.metadata,
            },
            "agent": {
                "proposed_action": case.proposed_action,
                "confidence": case.confidence,
                "agent_version": case.agent_version,
            },
            "decision": resolution.decision,
            "final_action": resolution.final_action,
            "labels": resolution.labels,
            "note": resolution.note,
            # The learning loop: how the case reached people (escalated, shadow, assisted, qa)
            # and, for a shadow case, the verdict on the hidden proposal — its real label.
            "label_source": case.label_source,
            "verdict": resolution.verdict or None,
            "reviewer": resolution.resolved_by.username,
            "resolved_at": serializers.DateTimeField().to_representation(resolution.resolved_at),
        }
