"""OpenAPI pieces: the error envelope, and the long-poll operation (a plain async view that
drf-spectacular cannot see, so it is added to the schema here)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(
                    required=False, help_text="per-field messages (400 only)"
                ),
            },
        )
    },
)

ERRORS = {
    400: "invalid body, field or parameter (code invalid or malformed_json)",
    401: "missing, unknown or revoked API key (WWW-Authenticate: Bearer)",
    403: "the key may not use that queue",
    404: "no such case for this agent",
    405: "method not allowed",
    409: "illegal transition (terminal case) or Idempotency-Key in flight (Retry-After: 1)",
    413: "body over 1 MiB",
    422: "Idempotency-Key reused with a different body",
    429: "rate limited or open-case cap (Retry-After)",
    500: "server error",
}


def error_responses(*codes: int) -> dict:
    return {code: OpenApiResponse(ErrorSerializer, ERRORS[code]) for code in (*codes, 405, 500)}


def add_long_poll(result, generator, request, public):
    """Postprocessing hook: document GET /api/v1/escalations/{id}/resolution."""
    case_ref = {"$ref": "#/components/schemas/Escalation"}
    error_ref = {"$ref": "#/components/schemas/Error"}
    result["paths"]["/api/v1/escalations/{id}/resolution"] = {
        "get": {
            "operationId": "wait_for_resolution",
            "summary": "Long-poll for a terminal state",
            "description": "Answers 200 with the case as soon as it is resolved, cancelled or "
            "expired, or 202 with the case when `wait` seconds pass first.",
            "tags": ["api"],
            "security": [{"bearerAuth": []}],
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                },
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0, "maximum": 30, "default": 0},
                    "description": "seconds to wait, at most 30",
                },
            ],
            "responses": {
                "200": {
                    "description": "terminal",
                    "content": {"application/json": {"schema": case_ref}},
                },
                "202": {
                    "description": "still open or claimed after the wait",
                    "content": {"application/json": {"schema": case_ref}},
                },
                **{
                    str(code): {
                        "description": ERRORS[code],
                        "content": {"application/json": {"schema": error_ref}},
                    }
                    for code in (400, 401, 404, 405, 500)
                },
            },
        }
    }
    result.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
    }
    return result


class AgentKeyScheme(OpenApiAuthenticationExtension):
    target_class = "escalation.api.authentication.AgentKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "an agent API key: hnd_XXXXXXXX_…",
        }
