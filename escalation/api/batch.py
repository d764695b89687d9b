"""POST /api/v1/escalations/batch: up to 100 create bodies in one request, each answered as
the single create would have answered it, in order.

Transaction: one per batch, no savepoint per item. Every item is decided before anything is
written — its body (the single create's validation), its idempotency key (the same Ledger),
then transitions.Intake.add, which checks queue and open-case cap (room for every item is
taken at once) — and a refused item raises before it touches the database, so it cannot spoil the
others. The accepted cases, their audit events and routing jobs are then inserted together
(three INSERTs for the whole batch, the events chained in one seal at commit) and their
idempotency answers stored in the same commit. A database error at that point fails the whole
batch (500, nothing written), which a client retrying with its keys gets through safely.
"""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from escalation import transitions
from escalation.api import idempotency
from escalation.api.authentication import take_tokens
from escalation.api.errors import ApiError, exception_handler
from escalation.api.schema import ErrorSerializer, error_responses
from escalation.api.serializers import EscalationSerializer, StrictSerializer, case_resource
from escalation.api.views import CreateBodies
from escalation.audit import Actor
from escalation.models import Agent

MAX_ITEMS = 100
KEY_FIELD = "idempotency_key"


# An item as the schema shows it: the single create's body (its component) and an optional key.
ITEM_SCHEMA = {
    "allOf": [
        {"$ref": "#/components/schemas/CreateEscalationRequest"},
        {
            "type": "object",
            "properties": {
                KEY_FIELD: {
                    "type": "string",
                    "nullable": True,
                    "minLength": 1,
                    "maxLength": idempotency.MAX_KEY_LENGTH,
                    "description": "as the single create's Idempotency-Key header, for this item",
                }
            },
        },
    ]
}


@extend_schema_field({"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "items": ITEM_SCHEMA})
class ItemsField(serializers.ListField):
    """The items as they came: each is checked on its own, so one bad item is its own 400."""


class BatchInputSerializer(StrictSerializer):
    items = ItemsField(
        allow_empty=False,
        max_length=MAX_ITEMS,
        help_text=f"1 to {MAX_ITEMS} create bodies",
    )


class BatchResultSerializer(serializers.Serializer):
    status = serializers.IntegerField(
        help_text="what the single create would have answered: 201, 200 (replay), 400, 403, "
        "409, 422 or 429"
    )
    replayed = serializers.BooleanField(help_text="an idempotent replay (Idempotent-Replayed)")
    retry_after = serializers.IntegerField(
        required=False, help_text="seconds, on a 409 or a rate-limited 429 (Retry-After)"
    )
    body = PolymorphicProxySerializer(
        component_name="BatchResultBody",
        serializers=[EscalationSerializer, ErrorSerializer],
        resource_type_field_name=None,
        help_text="the case resource (201, 200) or the error envelope",
    )


class BatchOutputSerializer(serializers.Serializer):
    results = BatchResultSerializer(many=True, help_text="one per item, in order")


def _answer(status: int, body: dict, replayed: bool = False) -> dict:
    return {"status": status, "replayed": replayed, "body": body}


def _failure(exc: Exception) -> dict:
    """The error answer the single create would give for `exc`."""
    response = exception_handler(exc, {})
    result = _answer(response.status_code, response.data)
    if response.has_header("Retry-After"):
        result["retry_after"] = int(response["Retry-After"])
    return result


def _split_key(item) -> tuple[str | None, object]:
    """(its idempotency key or None, the create body without it)."""
    if not isinstance(item, dict):
        return None, item  # refused as the single create refuses it
    body = {name: value for name, value in item.items() if name != KEY_FIELD}
    key = item.get(KEY_FIELD)
    return (None if key is None else idempotency.check_key(key, KEY_FIELD)), body


def create_batch(agent: Agent, items: list) -> list[dict]:
    """One answer per item, in order (see the module docstring)."""
    # The request itself has paid one token (the API's rate throttle): the first item's.
    granted, wait = take_tokens(agent, len(items) - 1)
    admitted = items[: granted + 1]
    entries: list[tuple[str | None, object] | ApiError] = []
    for item in admitted:
        try:
            entries.append(_split_key(item))
        except ApiError as exc:
            entries.append(exc)
    keys = {entry[0] for entry in entries if isinstance(entry, tuple) and entry[0] is not None}
    bodies = CreateBodies(agent)
    results = []
    with idempotency.held(agent, keys) as ledger:
        intake = transitions.Intake(
            actor=Actor.for_agent(agent), agent=agent, expected=len(admitted)
        )
        for entry in entries:
            if isinstance(entry, ApiError):
                results.append(_failure(entry))
                continue
            key, body = entry

            def create(body=body) -> tuple[int, dict]:
                fields = bodies.check(body)
                intake.allow(fields["queue"])
                return 201, case_resource(intake.add(**fields))

            try:
                status, answer, replayed = ledger.run(key, body, create)
            except (ApiError, ValidationError, transitions.TransitionError) as exc:
                results.append(_failure(exc))
            else:
                results.append(_answer(200 if replayed else status, answer, replayed))
        intake.save()
    if len(admitted) < len(items):
        # Past the agent's rate, as that many single creates would be (AgentRateThrottle.wait).
        refused = _failure(Throttled(max(1.0, wait)))
        results.extend(dict(refused) for _ in items[len(admitted) :])
    return results


class EscalationBatch(APIView):
    @extend_schema(
        operation_id="create_escalations_batch",
        summary="Create up to 100 cases in one request",
        description=(
            "Each item is a create body with an optional `idempotency_key` (as the single "
            "create's `Idempotency-Key` header). Every item gets its own result, in order: the "
            "status, body and retry time the single create would have answered it with, and "
            "`replayed` for an idempotent replay. One bad item does not spoil the others. The "
            "batch counts as one request per item against the agent's rate; items past it are "
            "429s. A 400, 413 or 429 for the request itself means no item was looked at."
        ),
        request=BatchInputSerializer,
        responses={200: BatchOutputSerializer, **error_responses(400, 401, 413, 429)},
    )
    def post(self, request: Request) -> Response:
        body = BatchInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response({"results": create_batch(request.user, body.validated_data["items"])})
