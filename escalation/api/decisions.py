"""POST /api/v1/decisions: the agent asks before acting (the learning loop, escalation.autonomy).

The body is a create body (with `agent_version`); the answer says whether the agent may act
alone (`auto`, 200) or must wait for a person (`review`, 201: the case is created exactly as
POST /api/v1/escalations creates it — same validation, idempotency and SLA).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from escalation import autonomy
from escalation.api import idempotency
from escalation.api.schema import error_responses
from escalation.api.serializers import (
    CreateEscalationSerializer,
    EscalationSerializer,
    case_resource,
)
from escalation.api.views import CreateBodies, idempotency_header
from escalation.models import Mode, PolicyDecision


class DecisionSerializer(serializers.Serializer):
    route = serializers.ChoiceField(
        choices=PolicyDecision.Route.values,
        help_text="auto: act now; review: wait for the person's decision on `case`",
    )
    case = EscalationSerializer(
        allow_null=True,
        help_text="review: the case to wait for; auto: the blind QA review drawn for this "
        "action, or null",
    )
    qa_sample = serializers.BooleanField(help_text="this autonomous action will be reviewed")
    mode = serializers.ChoiceField(choices=Mode.values)
    certificate = serializers.IntegerField(
        allow_null=True, help_text="the certificate an auto relied on (null for review)"
    )


def decision_resource(made: PolicyDecision) -> dict:
    return {
        "route": made.route,
        "case": case_resource(made.case) if made.case is not None else None,
        "qa_sample": made.qa_sample,
        "mode": made.mode,
        "certificate": made.certificate_id,
    }


class Decisions(APIView):
    @extend_schema(
        operation_id="decide",
        summary="Ask before acting: act alone (auto) or wait for a person (review)",
        request=CreateEscalationSerializer,
        parameters=[
            idempotency_header("Up to 255 characters; replays for 24 h; also seeds the QA draw")
        ],
        responses={
            200: OpenApiResponse(DecisionSerializer, "auto (or an idempotent replay)"),
            201: OpenApiResponse(DecisionSerializer, "review: a case was created"),
            **error_responses(400, 401, 403, 409, 413, 422, 429),
        },
    )
    def post(self, request: Request) -> Response:
        agent = request.user
        key = request.headers.get("Idempotency-Key")
        data = request.data

        def decide() -> tuple[int, dict]:
            made = autonomy.decide(agent=agent, fields=CreateBodies(agent).check(data), key=key)
            code = status.HTTP_200_OK if made.route == "auto" else status.HTTP_201_CREATED
            return code, decision_resource(made)

        return idempotency.respond(agent, key, data, decide, space="decisions:")
