"""GET /api/v1/escalations/{id}/resolution?wait=S — a plain async view (DRF views are sync).

While it waits it holds no worker thread and no database connection: each check of the case
borrows a pooled connection and gives it back at once, and the wait itself is an await on
Redis pub/sub (or a sleep between slow polls without Redis).
"""

from __future__ import annotations

import asyncio
import uuid

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from escalation import rows, wakeups
from escalation.api.authentication import authenticate_key, take_token
from escalation.api.errors import error_response
from escalation.api.serializers import case_resource
from escalation.api.views import read_own_case
from escalation.models import Escalation
from escalation.models.cases import TERMINAL_STATUSES

MAX_WAIT = 30
# Even with pub/sub, re-check the case this often: a lost wake-up costs at most this long. Each
# re-check of hundreds of waiters is a read that competes with the API's writes.
RECHECK_SECONDS = 10.0
POLL_SECONDS_WITHOUT_REDIS = 1.0


def _authenticate(header: str):
    try:
        key = authenticate_key(header)
        if key is None:
            return None, 0.0
        return key.agent, take_token(key.agent)
    finally:
        connection.close()  # back to the pool before any waiting


def _load(agent, case_id) -> tuple[dict | None, bool]:
    try:
        case = read_own_case(agent, case_id)
        if case is None:
            return None, False
        return case_resource(case), case.status in TERMINAL_STATUSES
    finally:
        connection.close()


def _status(agent, case_id) -> str | None:
    """The case's status alone (a re-check while waiting renders nothing): plain SQL, as 500
    waiters make 50 of these a second."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT status FROM {rows.table(Escalation)} WHERE id = %s AND agent_id = %s",  # noqa: S608
                [rows.key(Escalation, case_id), agent.pk],
            )
            row = cursor.fetchone()
        return row[0] if row else None
    finally:
        connection.close()


# The waits' own reads run on the thread pool, not on the one thread that runs the process's
# sync views (asgiref's thread-sensitive default): a wake-up does not queue behind the creates
# in flight, and each read closes its connection, so no thread keeps one.
def _off_the_view_thread(function):
    return sync_to_async(function, thread_sensitive=False)


def _parse_wait(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_WAIT:
        return None
    return int(raw)


@csrf_exempt  # agents carry no cookies; a POST must meet the JSON 405 below
@never_cache
async def wait_for_resolution(request: HttpRequest, id: str) -> JsonResponse:  # noqa: A002
    if request.method != "GET":
        return error_response(
            405,
            "method_not_allowed",
            f"method {request.method} not allowed",
            headers={"Allow": "GET"},
        )
    header = request.headers.get("Authorization", "")
    agent, retry_after = (
        await _off_the_view_thread(_authenticate)(header) if header else (None, 0.0)
    )
    if agent is None:
        return error_response(
            401,
            "unauthenticated",
            "missing, unknown or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if retry_after:
        return error_response(
            429,
            "rate_limited",
            "rate limited; retry later",
            headers={"Retry-After": str(max(1, round(retry_after + 0.5)))},
        )
    wait = _parse_wait(request.GET.get("wait"))
    if wait is None:
        return error_response(
            400,
            "invalid",
            f"wait must be 0..{MAX_WAIT} seconds",
            fields={"wait": f"an integer from 0 to {MAX_WAIT}"},
        )
    case_id = id
    try:
        uuid.UUID(case_id)
    except ValueError:
        return error_response(404, "not_found", "no such case")

    async with wakeups.subscribe(case_id) as subscription:
        body, terminal = await _off_the_view_thread(_load)(agent, case_id)
        if body is None:
            return error_response(404, "not_found", "no such case")
        if terminal or not wait:
            return JsonResponse(body, status=200 if terminal else 202)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            step = RECHECK_SECONDS if subscription.has_redis else POLL_SECONDS_WITHOUT_REDIS
            if await subscription.wait(min(remaining, step)):
                break  # woken: the case is terminal, read once below
            status = await _off_the_view_thread(_status)(agent, case_id)
            if status is None:
                return error_response(404, "not_found", "no such case")
            if status in TERMINAL_STATUSES:
                break
    # The answer is rendered once, at the end: terminal (200), or as it is after the wait (202).
    body, terminal = await _off_the_view_thread(_load)(agent, case_id)
    if body is None:
        return error_response(404, "not_found", "no such case")
    return JsonResponse(body, status=200 if terminal else 202)
