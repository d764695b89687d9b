"""The agent REST API (v1): one thin view per operation, each calling escalation.transitions
or a read in escalation.queries."""

from __future__ import annotations

import base64
import functools
import math
import re
import uuid

from django.db import connection
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, pagination, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from escalation import calibration, exports, rows, stats_queries, transitions
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
from escalation.models import Escalation, Queue, Resolution, Status
from escalation.timeparse import parse_utc

RESOLVER = Resolution._meta.get_field("resolved_by").related_model
# Query times as the schema states them: a zone is required (see _parse_time).
DATE_TIME = {"type": "string", "format": "date-time"}
# Printable ASCII without blanks at either end (HTTP strips them; see idempotency.check_key).
IDEMPOTENCY_KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": r"^[!-~]([ -~]*[!-~])?$",
}


def idempotency_header(description: str = "Up to 255 characters; replays for 24 h"):
    """The Idempotency-Key header as the schema documents it."""
    return OpenApiParameter(
        "Idempotency-Key", IDEMPOTENCY_KEY, OpenApiParameter.HEADER, description=description
    )


class CasePagination(pagination.CursorPagination):
    ordering = ("-created_at",)
    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ApiError(
                400,
                "invalid",
                "the cursor is not valid",
                fields={"cursor": "use the next link of a previous page"},
            ) from None


class IgnoreFormatParameter(DefaultContentNegotiation):
    """`format` is the labels endpoint's own parameter (json, jsonl or csv), not DRF's renderer
    override; this API only ever renders JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def own_cases(agent) -> QuerySet[Escalation]:
    return Escalation.objects.filter(agent=agent).select_related(
        "queue", "resolution", "resolution__resolved_by"
    )


def own_case(agent, case_id) -> Escalation:
    case = read_own_case(agent, case_id) if _is_uuid(case_id) else None
    if case is None:
        raise ApiError(404, "not_found", "no such case")
    return case


def read_own_case(agent, case_id) -> Escalation | None:
    """own_cases(agent)'s case `case_id` with its queue and resolution, or None. Plain SQL
    (escalation.rows): agents poll their cases, and each woken long-poll reads its case."""
    found = rows.fetch(
        _own_case_sql(connection.vendor),
        [rows.key(Escalation, case_id), agent.pk],
        Escalation,
        Queue,
        Resolution,
        RESOLVER,
    )
    if found is None:
        return None
    case, case.queue, resolution, resolved_by = found
    if resolution.pk is None:  # none yet: known, as select_related would know it
        Escalation.resolution.related.set_cached_value(case, None)
    else:
        resolution.resolved_by = resolved_by
        case.resolution = resolution
    return case


@functools.cache
def _own_case_sql(vendor: str) -> str:
    return (
        f"SELECT {rows.columns(Escalation, 'c')}, {rows.columns(Queue, 'q')},"  # noqa: S608
        f" {rows.columns(Resolution, 'r')}, {rows.columns(RESOLVER, 'u')}"
        f" FROM {rows.table(Escalation)} c JOIN {rows.table(Queue)} q ON q.id = c.queue_id"
        f" LEFT JOIN {rows.table(Resolution)} r ON r.escalation_id = c.id"
        f" LEFT JOIN {rows.table(RESOLVER)} u ON u.id = r.resolved_by_id"
        " WHERE c.id = %s AND c.agent_id = %s"
    )


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _parse_time(name: str, value: str):
    parsed = parse_utc(value)
    if parsed is None:
        raise ApiError(
            400,
            "invalid",
            f"{name} must be an ISO 8601 time with a zone",
            fields={name: "an ISO 8601 time with a zone, e.g. 2026-01-31T12:00:00Z"},
        )
    return parsed


@functools.cache
def _create_serializer() -> CreateEscalationSerializer:
    # One for all requests (its fields are built once); run_validation keeps nothing on it.
    return CreateEscalationSerializer()


class CreateBodies:
    """Checks create bodies for one agent: the fields, then the queue, which must be one of the
    agent's (403 otherwise). A batch checks all its items with one, so the serializer's fields
    are built once and each queue slug is looked up once."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self._serializer = _create_serializer()
        self._queues: dict[str, Queue | None] = {}

    def check(self, data) -> dict:
        """The fields of transitions.create (and Intake.add) for `data`, or a 400 / 403."""
        # run_validation keeps nothing on the serializer, so one serves every body.
        values = dict(self._serializer.run_validation(data))
        slug = values.pop("queue")
        if slug not in self._queues:
            self._queues[slug] = self.agent.allowed_queue(slug)
        queue = self._queues[slug]
        if queue is None:
            raise ApiError(
                403,
                "queue_not_allowed",
                "this agent may not post to that queue",
                fields={"queue": "not one of this agent's queues"},
            )
        return {"queue": queue, **values}

    @property
    def checked_queues(self) -> list[Queue]:
        """The queues check() found the agent may post to (for transitions.Intake)."""
        return [queue for queue in self._queues.values() if queue is not None]


def create_case(agent, data: dict) -> Escalation:
    """Validate a create body and create the case."""
    bodies = CreateBodies(agent)
    fields = bodies.check(data)
    return transitions.create(
        actor=Actor.for_agent(agent),
        agent=agent,
        checked_queues=bodies.checked_queues,
        **fields,
    )


class EscalationListCreate(generics.GenericAPIView):
    serializer_class = EscalationSerializer
    pagination_class = CasePagination

    @extend_schema(
        operation_id="create_escalation",
        summary="Create a case",
        request=CreateEscalationSerializer,
        parameters=[idempotency_header()],
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

        return idempotency.respond(agent, key, data, create)

    @extend_schema(
        operation_id="list_escalations",
        summary="This agent's cases, newest first",
        parameters=[
            OpenApiParameter("status", str, enum=Status.values),
            OpenApiParameter("queue", str, description="queue slug"),
            OpenApiParameter("external_id", str),
            OpenApiParameter("updated_after", DATE_TIME, description="ISO 8601 time"),
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
    def get(self, request: Request, id) -> Response:  # noqa: A002 - the spec's {id}
        return Response(case_resource(own_case(request.user, id)))


class EscalationContext(APIView):
    @extend_schema(
        operation_id="append_context",
        summary="Add context to an open case",
        request=ContextUpdateInputSerializer,
        responses={201: ContextUpdateSerializer, **error_responses(400, 401, 404, 409, 413)},
    )
    def post(self, request: Request, id) -> Response:  # noqa: A002 - the spec's {id}
        case = own_case(request.user, id)
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
    def post(self, request: Request, id) -> Response:  # noqa: A002 - the spec's {id}
        case = own_case(request.user, id)
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


LABEL_PAGE = 100
LABEL_PAGE_MAX = 1000


def _encode_label_cursor(position: tuple | None) -> str | None:
    if position is None:
        return None
    resolved_at, case_id = position
    raw = f"{resolved_at.isoformat()}|{case_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_label_cursor(text: str) -> tuple:
    try:
        resolved_at, case_id = base64.urlsafe_b64decode(text.encode()).decode().split("|")
        parsed = parse_utc(resolved_at)
        uuid.UUID(case_id)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if parsed is None:
        raise ApiError(
            400,
            "invalid",
            "the cursor is not valid",
            fields={"cursor": "use the next link of a previous page"},
        )
    return parsed, case_id


class LabelList(APIView):
    content_negotiation_class = IgnoreFormatParameter

    @extend_schema(
        operation_id="list_labels",
        summary="Resolved cases as training labels, oldest first",
        parameters=[
            OpenApiParameter("queue", str, description="queue slug"),
            OpenApiParameter("after", DATE_TIME, description="ISO 8601 time: resolved after it"),
            OpenApiParameter(
                "until", DATE_TIME, description="ISO 8601 time: resolved at or before it"
            ),
            OpenApiParameter(
                "format",
                str,
                enum=["json", *exports.FORMATS],
                description=(
                    "json: a page; jsonl streams every matching label as JSON Lines, csv as"
                    " CSV (one row per label, JSON fields as canonical JSON)"
                ),
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": LABEL_PAGE_MAX},
                description=f"page size (format=json), at most {LABEL_PAGE_MAX}",
            ),
            OpenApiParameter("cursor", str, description="from the previous page's next link"),
        ],
        responses={
            200: OpenApiResponse(description="a page of labels, JSON Lines or CSV"),
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
        if params.get("until"):
            labels = labels.filter(
                resolution__resolved_at__lte=_parse_time("until", params["until"])
            )
        fmt = params.get("format", "json")
        if fmt in exports.FORMATS:
            return exports.stream(request, labels, fmt)
        if fmt != "json":
            raise ApiError(
                400,
                "invalid",
                "format must be json, jsonl or csv",
                fields={"format": "json, jsonl or csv"},
            )
        limit = _parse_limit(params.get("limit"), LABEL_PAGE, LABEL_PAGE_MAX)
        after = _decode_label_cursor(params["cursor"]) if params.get("cursor") else None
        rows, last = exports.label_batch(labels, after, limit)
        next_url = None
        if last is not None:
            query = params.copy()
            query["cursor"] = _encode_label_cursor(last)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"next": next_url, "results": [LabelSerializer(c).data for c in rows]})


def _parse_limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise ApiError(
            400,
            "invalid",
            f"limit must be 1..{maximum}",
            fields={"limit": f"an integer from 1 to {maximum}"},
        )
    return int(raw)


# --- calibration -----------------------------------------------------------------------------

CALIBRATION_NOTE = (
    "escalated cases are the ones the agent chose to send, so these figures speak for those only"
)
# A plain decimal number: no sign, no "nan" or "inf", no digit separators.
_DECIMAL = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# The smallest alpha or delta taken. Below it n_min = ln(delta) / ln(1 - alpha) runs past
# billions of cases (no one can act on that), and near the smallest doubles (alpha ~ 1e-100,
# a subnormal delta) calibration.n_min's one-step search no longer ends.
_LEVEL_FLOOR = 1e-9
LEVEL = {"type": "number", "minimum": _LEVEL_FLOOR, "maximum": 0.5}


def _parse_level(params, name: str, default: float, errors: dict) -> float:
    """alpha or delta from the query: a number in (0, 0.5]; the default when absent or empty."""
    raw = params.get(name, "").strip()
    if not raw:
        return default
    value = float(raw) if raw.isascii() and _DECIMAL.fullmatch(raw) else math.nan
    if not _LEVEL_FLOOR <= value <= 0.5:  # NaN fails too
        errors[name] = f"a number in (0, 0.5], at least {_LEVEL_FLOOR:g}, e.g. {default}"
    return value


class CalibrationBandSerializer(serializers.Serializer):
    band = serializers.IntegerField(help_text="0..9: confidence [band/10, (band+1)/10)")
    lo = serializers.FloatField()
    hi = serializers.FloatField()
    label = serializers.CharField()
    n = serializers.IntegerField()
    approved = serializers.IntegerField()
    modified = serializers.IntegerField()
    rejected = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="modified + rejected")
    approved_share = serializers.FloatField(allow_null=True)
    modified_share = serializers.FloatField(allow_null=True)
    rejected_share = serializers.FloatField(allow_null=True)
    mean_confidence = serializers.FloatField(allow_null=True)
    error_rate = serializers.FloatField(allow_null=True)
    accuracy = serializers.FloatField(allow_null=True, help_text="share approved as is")


class CalibrationPointSerializer(serializers.Serializer):
    band = serializers.IntegerField()
    lo = serializers.FloatField()
    hi = serializers.FloatField()
    n = serializers.IntegerField()
    mean_confidence = serializers.FloatField()
    accuracy = serializers.FloatField()
    gap = serializers.FloatField(help_text="accuracy - mean_confidence")


class CalibrationEvidenceSerializer(serializers.Serializer):
    t = serializers.FloatField(help_text="threshold: the cases with confidence >= t")
    n = serializers.IntegerField()
    k = serializers.IntegerField(help_text="errors among them")
    coverage = serializers.FloatField(help_text="n / total")
    upper_bound = serializers.FloatField(help_text="Clopper-Pearson upper bound of the error rate")
    p_value = serializers.FloatField(help_text="P(Binomial(n, alpha) <= k)")
    needed_error_free = serializers.IntegerField(required=False)


class CalibrationCertificateSerializer(serializers.Serializer):
    certified = serializers.BooleanField()
    theta = serializers.FloatField(
        allow_null=True, help_text="auto-handle confidence >= theta (null when not certified)"
    )
    theta_grid = serializers.FloatField(allow_null=True)
    threshold_t = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField()
    k = serializers.IntegerField()
    total = serializers.IntegerField()
    coverage = serializers.FloatField()
    upper_bound = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    alpha = serializers.FloatField()
    delta = serializers.FloatField()
    n_min = serializers.IntegerField()
    needed_error_free = serializers.IntegerField(allow_null=True)
    best = CalibrationEvidenceSerializer(
        allow_null=True, help_text="when not certified: the evidence closest to certifying"
    )
    stopped_at = CalibrationEvidenceSerializer(
        allow_null=True, help_text="the tested threshold where the walk stopped"
    )


class CalibrationSerializer(serializers.Serializer):
    agent = serializers.CharField()
    queue = serializers.CharField(allow_null=True)
    agent_version = serializers.CharField(allow_null=True)
    source = serializers.CharField(allow_null=True, help_text="the label-source filter, if any")
    alpha = serializers.FloatField()
    delta = serializers.FloatField()
    note = serializers.CharField()
    total = serializers.IntegerField(help_text="resolved cases counted")
    bands = CalibrationBandSerializer(many=True)
    reliability = CalibrationPointSerializer(many=True)
    ece = serializers.FloatField(allow_null=True, help_text="expected calibration error")
    brier = serializers.FloatField(allow_null=True)
    certificate = CalibrationCertificateSerializer()


class Calibration(APIView):
    @extend_schema(
        operation_id="get_calibration",
        summary="This agent's calibration on its own resolved cases",
        description=(
            "Per confidence band (0.0-0.1 ... 0.9-1.0): counts and shares approved as is, "
            "modified and rejected (an error is a modify or a reject); reliability points, "
            "ECE and Brier score; and the certified threshold for error budget `alpha` at "
            "confidence `1 - delta` (exact binomial, thresholds 1.00, 0.99, ... tested from "
            "the top, stopping at the first that fails). Escalated cases are the ones the "
            "agent chose to send, so the figures speak for those only. An unknown queue "
            "counts nothing."
        ),
        parameters=[
            OpenApiParameter("queue", str, description="queue slug"),
            OpenApiParameter("agent_version", str, description="only this agent_version's cases"),
            OpenApiParameter(
                "source",
                str,
                enum=[key for key in stats_queries.LABEL_FILTERS if key],
                description="only these labels: unbiased (shadow, assisted, QA) or one source; "
                "default every label",
            ),
            OpenApiParameter(
                "alpha",
                LEVEL,
                description=f"error budget, {_LEVEL_FLOOR:g} to 0.5; "
                f"default {calibration.DEFAULT_ALPHA}",
            ),
            OpenApiParameter(
                "delta",
                LEVEL,
                description=f"1 - confidence level, {_LEVEL_FLOOR:g} to 0.5; "
                f"default {calibration.DEFAULT_DELTA}",
            ),
        ],
        responses={200: CalibrationSerializer, **error_responses(400, 401)},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        errors: dict[str, str] = {}
        alpha = _parse_level(params, "alpha", calibration.DEFAULT_ALPHA, errors)
        delta = _parse_level(params, "delta", calibration.DEFAULT_DELTA, errors)
        source = params.get("source") or ""
        if source not in stats_queries.LABEL_FILTERS:
            errors["source"] = stats_queries.LABEL_FILTER_ERROR
        if errors:
            message = (
                "alpha and delta must be numbers in (0, 0.5]"
                if "source" not in errors
                else "alpha, delta or source is not valid"
            )
            raise ApiError(400, "invalid", message, fields=errors)
        queue = params.get("queue") or None
        version = params.get("agent_version") or None
        queue_ids = None if queue is None else Queue.objects.filter(slug=queue).values("pk")
        sources = stats_queries.LABEL_FILTERS[source][1]
        counts = stats_queries.calibration_counts(
            queue_ids, request.user.pk, version, sources=sources
        )
        summary = calibration.summarize_grid(counts, alpha, delta)
        return Response(
            {
                "agent": request.user.name,
                "queue": queue,
                "agent_version": version,
                "source": source or None,
                "alpha": alpha,
                "delta": delta,
                "note": CALIBRATION_NOTE,
                **summary,
            }
        )
