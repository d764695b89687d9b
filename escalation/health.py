"""/healthz, /readyz and /metrics: what load balancers and Prometheus ask."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily

from escalation import queries


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def broker_ok() -> bool:
    from handoff.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=1)
        return True
    except Exception:  # noqa: BLE001 - any failure means "down"
        return False


def migrations_applied() -> bool:
    executor = MigrationExecutor(connection)
    return not executor.migration_plan(executor.loader.graph.leaf_nodes())


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers and the database is reachable. The broker is reported but
    never fails it, since cases are still accepted while it is down."""
    db = database_ok()
    body = {
        "status": "ok" if db else "down",
        "database": "ok" if db else "down",
        "broker": "ok" if broker_ok() else "down",
    }
    return JsonResponse(body, status=200 if db else 503)


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    db = database_ok()
    checks = {
        "database": db,
        "broker": broker_ok(),
        "migrations": db and migrations_applied(),
    }
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "not_ready",
        **{name: "ok" if ok else "down" for name, ok in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)


class _QueueCollector:
    """Reads the numbers at scrape time, so every web process reports the same truth."""

    def collect(self):
        depth = GaugeMetricFamily(
            "handoff_queue_depth", "Cases open or claimed, per queue", labels=["queue", "status"]
        )
        oldest = GaugeMetricFamily(
            "handoff_queue_oldest_open_age_seconds",
            "Age of the oldest open case, per queue",
            labels=["queue"],
        )
        for row in queries.queue_depths():
            depth.add_metric([row["queue"], row["status"]], row["count"])
        for queue, age in queries.oldest_open_ages().items():
            oldest.add_metric([queue], age)
        yield depth
        yield oldest


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.HANDOFF_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = HttpResponse(
                "metrics token required\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = "Bearer"
            return response
    registry = CollectorRegistry()
    registry.register(_QueueCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
