"""Fault tests: each starts its own processes on 127.0.0.1 — a redis-server of its own (broker,
cache and wake-ups), the web server, Celery workers with embedded beat — against the test
database, breaks one of them, and checks that nothing was lost or done twice.

The clocks are compressed (sweeps and re-drive every second, a 4 s webhook lease), every wait is
bounded, every process is stopped by PID at the end, and their log tails are printed when a
test fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from escalation.models import AgentKey
from tests.support import (
    CeleryWorker,
    RedisServer,
    WebServer,
    celery_broker,
    log_tail,
    worker_env,
)

FAST = {
    "HANDOFF_SLA_SWEEP_SECONDS": "1",
    "HANDOFF_OUTBOX_REDRIVE_SECONDS": "1",
    "HANDOFF_OUTBOX_GRACE_SECONDS": "1",
    "HANDOFF_STATS_REFRESH_SECONDS": "3600",
    "HANDOFF_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "HANDOFF_WEBHOOK_RETRY_SCHEDULE": "1s,1s,1s,1s,1s",
    "HANDOFF_WEBHOOK_CONNECT_TIMEOUT": "1",
    "HANDOFF_WEBHOOK_READ_TIMEOUT": "2",
    "HANDOFF_WEBHOOK_LEASE_SECONDS": "4",
}


class Stack:
    """The processes of one test, all on its own Redis."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.redis = RedisServer(tmp_path).start()
        self.queue = settings.CELERY_TASK_DEFAULT_QUEUE
        self.workers: list[CeleryWorker] = []
        self.webs: list[WebServer] = []

    @property
    def broker_url(self) -> str:
        return self.redis.url(1)

    @property
    def redis_url(self) -> str:
        return self.redis.url(0)

    def env(self, role: str, **extra: str) -> dict:
        return worker_env(
            queue=self.queue,
            var_dir=self.tmp,
            application_name=f"handoff-fault-{role}",
            extra={**FAST, "DATABASE_POOL_MAX_SIZE": "3", **extra},
            broker_url=self.broker_url,
            redis_url=self.redis_url,
        )

    def worker(self, **extra: str) -> CeleryWorker:
        number = len(self.workers)
        worker = CeleryWorker(
            env=self.env("worker", **extra),
            queue=self.queue,
            name=f"fault-{number}",
            log_path=self.tmp / f"worker-{number}.log",
            schedule=self.tmp / f"beat-schedule-{number}",
            pool="prefork",
        )
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def web(self, graceful_timeout: int = 30, **extra: str) -> WebServer:
        server = WebServer(
            env=self.env("web", **extra),
            log_path=self.tmp / f"web-{len(self.webs)}.log",
            graceful_timeout=graceful_timeout,
        )
        self.webs.append(server)
        return server.start()

    def stop(self) -> None:
        for process in [*self.webs, *self.workers]:
            process.stop()
        self.redis.kill()

    def print_logs(self) -> None:
        for path in sorted(self.tmp.glob("*.log")):
            print(f"--- {path.name} ---\n{log_tail(path, 40)}")


@pytest.fixture
def stack(transactional_db, tmp_path, settings):
    """Processes of this test's own; this process's Celery app and Redis client point at the
    same Redis, so what the test does in-process rings the same workers."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (other processes share the test database)")
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.HANDOFF_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    running = Stack(tmp_path)
    settings.REDIS_URL = running.redis_url  # wake-ups published by in-process transitions
    try:
        with celery_broker(running.broker_url, own_prefix=False):
            yield running
    finally:
        running.stop()
        running.print_logs()  # shown only when the test failed


@pytest.fixture
def api_key(agent) -> str:
    return AgentKey.generate(agent)[1]
