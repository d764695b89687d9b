"""The agent REST API (v1): one thin view per operation, each calling escalation.transitions
or a read in escalation.queries."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import StreamingHttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, pagination, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from escalation import transitions
from escalation.api import idempotency
from escalation.api.errors import ApiError
from escalation.api.schema import error_responses
from escalation.api.serializers import (
    CancelInputSerializer,
    ContextUpdateInputSerializer,
    ContextUpdateSerializer,
    CreateEscalationSerializer,
    EscalationSerializer,
    LabelSerializer,
    QueueSerializer,
    case_resource,
)
from escalation.audit import Actor
from escalation.models import Escalation, Status

JSONL_BATCH = 500


class CasePagination(pagination.CursorPagination):
    ordering = ("-created_at",)
    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"


class LabelPagination(pagination.CursorPagination):
    ordering = ("resolution__resolved_at",)
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "limit"


def own_cases(agent) -> QuerySet[Escalation]:
    return Escalation.objects.filter(agent=agent).select_related(
        "queue", "resolution", "resolution__resolved_by"
    )


def own_case(agent, case_id) -> Escalation:
    case = own_cases(agent).filter(pk=case_id).first() if _is_uuid(case_id) else None
    if case is None:
        raise ApiError(404, "not_found", "no such case")
    return case


def _is_uuid(value) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _parse_time(name: str, value: str):
    parsed = parse_datetime(value) if value else None
    if parsed is None or parsed.tzinfo is None:
        raise ApiError(
            400,
            "invalid",
            f"{name} must be an ISO 8601 time with a zone",
            fields={name: "an ISO 8601 time with a zone, e.g. 2026-01-31T12:00:00Z"},
        )
    return parsed


def create_case(agent, data: dict) -> Escalation:
    """Validate a create body and create the case: shared by single and batch creates."""
    body = CreateEscalationSerializer(data=data)
    body.is_valid(raise_exception=True)
    values = dict(body.validated_data)
    queue = agent.allowed_queues().filter(slug=values.pop("queue")).first()
    if queue is None:
        raise ApiError(
            403,
            "queue_not_allowed",
            "this agent may not post to that queue",
            fields={"queue": "not one of this agent's queues"},
        )
    return transitions.create(actor=Actor.for_agent(agent), agent=agent, queue=queue, **values)


class EscalationListCreate(generics.GenericAPIView):
    serializer_class = EscalationSerializer
    pagination_class = CasePagination

    @extend_schema(
        operation_id="create_escalation",
        summary="Create a case",
        request=CreateEscalationSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Up to 255 characters; replays for 24 h",
            )
        ],
        responses={
            201: EscalationSerializer,
            200: OpenApiResponse(EscalationSerializer, "Idempotent replay"),
            **error_responses(400, 401, 403, 409, 413, 422, 429),
        },
    )
    def post(self, request: Request) -> Response:
        agent = request.user
        key = request.headers.get("Idempotency-Key")
        data = request.data

        def create() -> tuple[int, dict]:
            return status.HTTP_201_CREATED, case_resource(create_case(agent, data))

        if key is None:
            code, body = create()
            return Response(body, status=code)
        code, body, replayed = idempotency.run_once(agent, idempotency.check_key(key), data, create)
        if replayed:
            return Response(body, status=200, headers={"Idempotent-Replayed": "true"})
        return Response(body, status=code)

    @extend_schema(
        operation_id="list_escalations",
        summary="This agent's cases, newest first",
        parameters=[
            OpenApiParameter("status", str, enum=Status.values),
            OpenApiParameter("queue", str, description="queue slug"),
            OpenApiParameter("external_id", str),
            OpenApiParameter("updated_after", str, description="ISO 8601 time"),
            OpenApiParameter("limit", int, description="page size, at most 200"),
        ],
        responses={200: EscalationSerializer(many=True), **error_responses(400, 401)},
    )
    def get(self, request: Request) -> Response:
        cases = own_cases(request.user)
        params = request.query_params
        if "status" in params:
            if params["status"] not in Status.values:
                raise ApiError(
                    400,
                    "invalid",
                    "unknown status",
                    fields={"status": f"one of {', '.join(Status.values)}"},
                )
            cases = cases.filter(status=params["status"])
        if "queue" in params:
            cases = cases.filter(queue__slug=params["queue"])
        if "external_id" in params:
            cases = cases.filter(external_id=params["external_id"])
        if "updated_after" in params:
            cases = cases.filter(
                updated_at__gt=_parse_time("updated_after", params["updated_after"])
            )
        page = self.paginate_queryset(cases)
        return self.get_paginated_response(EscalationSerializer(page, many=True).data)


class EscalationDetail(APIView):
    @extend_schema(
        operation_id="get_escalation",
        summary="One case with its resolution",
        responses={200: EscalationSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, case_id) -> Response:
        return Response(case_resource(own_case(request.user, case_id)))


class EscalationContext(APIView):
    @extend_schema(
        operation_id="append_context",
        summary="Add context to an open case",
        request=ContextUpdateInputSerializer,
        responses={201: ContextUpdateSerializer, **error_responses(400, 401, 404, 409, 413)},
    )
    def post(self, request: Request, case_id) -> Response:
        case = own_case(request.user, case_id)
        body = ContextUpdateInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        update = transitions.append_context(
            actor=Actor.for_agent(request.user), case_id=case.pk, **body.validated_data
        )
        return Response(ContextUpdateSerializer(update).data, status=201)


class EscalationCancel(APIView):
    @extend_schema(
        operation_id="cancel_escalation",
        summary="Withdraw a case",
        request=CancelInputSerializer,
        responses={200: EscalationSerializer, **error_responses(400, 401, 404, 409)},
    )
    def post(self, request: Request, case_id) -> Response:
        case = own_case(request.user, case_id)
        body = CancelInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        case = transitions.cancel(
            actor=Actor.for_agent(request.user),
            case_id=case.pk,
            reason=body.validated_data["reason"],
        )
        return Response(case_resource(own_case(request.user, case.pk)))


class QueueList(APIView):
    @extend_schema(
        operation_id="list_queues",
        summary="Queues this agent may post to, with SLA targets and label schema",
        responses={200: QueueSerializer(many=True), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        queues = request.user.allowed_queues().order_by("slug")
        return Response(QueueSerializer(queues, many=True).data)


class LabelList(generics.GenericAPIView):
    pagination_class = LabelPagination

    @extend_schema(
        operation_id="list_labels",
        summary="Resolved cases as training labels, oldest first",
        parameters=[
            OpenApiParameter("queue", str, description="queue slug"),
            OpenApiParameter("after", str, description="ISO 8601 time: resolved after it"),
            OpenApiParameter(
                "format",
                str,
                enum=["json", "jsonl"],
                description="jsonl streams every matching label as JSON Lines",
            ),
            OpenApiParameter("limit", int, description="page size, at most 1000"),
        ],
        responses={
            200: OpenApiResponse(description="a page of labels, or JSON Lines"),
            **error_responses(400, 401),
        },
    )
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        labels = own_cases(request.user).filter(status=Status.RESOLVED)
        params = request.query_params
        if params.get("queue"):
            labels = labels.filter(queue__slug=params["queue"])
        if params.get("after"):
            labels = labels.filter(
                resolution__resolved_at__gt=_parse_time("after", params["after"])
            )
        fmt = params.get("format", "json")
        if fmt == "jsonl":
            return stream_jsonl(request, labels)
        if fmt != "json":
            raise ApiError(
                400, "invalid", "format must be json or jsonl", fields={"format": "json or jsonl"}
            )
        page = self.paginate_queryset(labels)
        return self.get_paginated_response([LabelSerializer(c).data for c in page])

    def get_queryset(self):  # for the schema generator only
        return Escalation.objects.none()


def stream_jsonl(request, cases: QuerySet[Escalation]) -> StreamingHttpResponse:
    """One label per line, fetched in keyset batches: memory stays flat however many there are.

    Under ASGI (production) the iterator must be async, or Django would buffer a sync one
    whole; each batch then borrows a database connection only for its own query.
    """
    from asgiref.sync import sync_to_async
    from django.core.handlers.asgi import ASGIRequest

    from escalation.audit import canonical_json

    def batch_after(last) -> tuple[list[str], tuple | None]:
        rows = cases
        if last is not None:
            rows = rows.filter(
                Q(resolution__resolved_at__gt=last[0])
                | Q(resolution__resolved_at=last[0], pk__gt=last[1])
            )
        batch = list(rows.order_by("resolution__resolved_at", "pk")[:JSONL_BATCH])
        if not batch:
            return [], None
        tail = batch[-1]
        return (
            [canonical_json(LabelSerializer(c).data) + "\n" for c in batch],
            (tail.resolution.resolved_at, tail.pk),
        )

    def sync_lines():
        last = None
        while True:
            lines, last = batch_after(last)
            if not lines:
                return
            yield from lines

    async def async_lines():
        last = None
        while True:
            lines, last = await sync_to_async(batch_after)(last)
            if not lines:
                return
            for line in lines:
                yield line

    content = async_lines() if isinstance(request._request, ASGIRequest) else sync_lines()
    response = StreamingHttpResponse(content, content_type="application/x-ndjson")
    response["Content-Disposition"] = 'attachment; filename="labels.jsonl"'
    return response
