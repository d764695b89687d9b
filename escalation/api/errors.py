"""The API's one error envelope: {"error": {"code", "message", "fields"}}, for every status,
never an HTML page or a stack trace."""

from __future__ import annotations

import logging
from functools import wraps

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response

from escalation.transitions import TransitionError

log = logging.getLogger("handoff.api")

MAX_BODY_BYTES = 1024 * 1024

# Domain error codes -> HTTP status.
TRANSITION_STATUS = {
    "not_found": 404,
    "forbidden": 403,
    "invalid": 400,
    "open_case_cap": 429,
    "illegal_transition": 409,
    "lease_expired": 409,
    "not_claim_holder": 409,
}


def envelope(code: str, message: str, fields: dict | None = None) -> dict:
    error: dict = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def error_response(
    status_code: int,
    code: str,
    message: str,
    fields: dict | None = None,
    headers: dict | None = None,
) -> JsonResponse:
    """For plain Django views (long-poll, middleware, handlers) outside DRF."""
    response = JsonResponse(envelope(code, message, fields), status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


class ApiError(exceptions.APIException):
    """An API error with its own code, status and optional headers."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        fields: dict | None = None,
        headers: dict | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}


def _flatten(detail) -> dict | str:
    """DRF's nested error details -> {"field": "message"} (nested objects kept as dicts)."""
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        if len(detail) == 1 or all(not isinstance(d, dict | list) for d in detail):
            return " ".join(str(d) for d in detail)
        return {str(i): _flatten(d) for i, d in enumerate(detail) if d}
    return str(detail)


_CODES = {
    exceptions.NotAuthenticated: ("unauthenticated", 401),
    exceptions.AuthenticationFailed: ("unauthenticated", 401),
    exceptions.PermissionDenied: ("forbidden", 403),
    exceptions.NotFound: ("not_found", 404),
    exceptions.MethodNotAllowed: ("method_not_allowed", 405),
    exceptions.NotAcceptable: ("not_acceptable", 406),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", 415),
    exceptions.Throttled: ("rate_limited", 429),
    exceptions.ParseError: ("malformed_json", 400),
}


def exception_handler(exc, context) -> Response:
    if isinstance(exc, ApiError):
        response = Response(
            envelope(exc.error_code, exc.message, exc.fields), status=exc.status_code
        )
        for name, value in exc.headers.items():
            response[name] = value
        return response
    if isinstance(exc, TransitionError):
        return Response(
            envelope(exc.code, exc.message, exc.fields), status=TRANSITION_STATUS.get(exc.code, 409)
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(envelope("body_too_large", "the request body is over 1 MiB"), status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            return Response(envelope("invalid", str(fields)), status=400)
        return Response(envelope("invalid", "the request is not valid", fields), status=400)
    # Imported here: rest_framework.views loads the authentication classes, which import us.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        log.exception("unhandled API error", exc_info=exc)
        return Response(
            envelope("server_error", "something went wrong on our side"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    code = next((c for cls, (c, _) in _CODES.items() if isinstance(exc, cls)), "error")
    message = _flatten(exc.detail) if hasattr(exc, "detail") else str(exc)
    response.data = envelope(code, message if isinstance(message, str) else str(message))
    return response


def is_api_path(path: str) -> bool:
    return path.startswith("/api/")


def get_only(view):
    """For the schema and docs views: any other method is a JSON 405 (their renderers would
    answer in YAML or HTML), and a POST never meets Django's HTML CSRF page."""

    @csrf_exempt
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.method not in ("GET", "HEAD"):
            return error_response(
                405,
                "method_not_allowed",
                f"method {request.method} not allowed",
                headers={"Allow": "GET"},
            )
        return view(request, *args, **kwargs)

    return wrapped


def _has_nul(params) -> bool:
    return any("\x00" in name or "\x00" in "".join(values) for name, values in params.lists())


class ApiErrorMiddleware:
    """Under /api/: bodies over 1 MiB are a JSON 413 before anything parses them, and any
    exception that escapes a view (or a URL that matches nothing) still answers in JSON."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if is_api_path(request.path):
            if _has_nul(request.GET):
                # PostgreSQL refuses NUL in text: a query parameter with one never gets there.
                return error_response(
                    400, "invalid", "query parameters must not contain NUL characters"
                )
            length = request.META.get("CONTENT_LENGTH", "")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                return error_response(413, "body_too_large", "the request body is over 1 MiB")
            if not length and request.method in ("POST", "PUT", "PATCH"):
                # A chunked body (HTTP/1.1 under ASGI) has no Content-Length, and DRF would
                # read it as empty. The ASGI handler has already buffered it: measure it and
                # tell DRF its length.
                too_large = error_response(413, "body_too_large", "the request body is over 1 MiB")
                try:
                    body = request.body
                except RequestDataTooBig:
                    return too_large
                if len(body) > MAX_BODY_BYTES:
                    return too_large
                request.META["CONTENT_LENGTH"] = str(len(body))
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        if isinstance(exception, RequestDataTooBig):
            return error_response(413, "body_too_large", "the request body is over 1 MiB")
        if isinstance(exception, Http404):
            return error_response(404, "not_found", "not found")
        log.exception("unhandled API error", exc_info=exception)
        return error_response(500, "server_error", "something went wrong on our side")


def handler404(request, exception=None):
    if is_api_path(request.path):
        return error_response(404, "not_found", "no such endpoint")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if is_api_path(request.path):
        return error_response(500, "server_error", "something went wrong on our side")
    from django.views.defaults import server_error

    return server_error(request)
