"""Create round trip on PostgreSQL, one client, against the real server (gunicorn + uvicorn).

Baseline measured in the same run: an authenticated read (GET /api/v1/queues) through the same
stack, so the ratio says what a create costs beyond auth, routing and serialization.

    .venv/bin/python bench/create_roundtrip.py [--n 300]

Uses its own database (handoff_bench, re-created) and Redis db 13 under its own key prefix;
starts and stops its server by PID.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv/bin/python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RUN_ID = uuid.uuid4().hex[:8]


def env() -> dict:
    e = dict(os.environ)
    e.update(
        DJANGO_SECRET_KEY="bench-only",
        DATABASE_URL=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/handoff_bench"
        ),
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        CELERY_BROKER_URL=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"),
        HANDOFF_CACHE_PREFIX=f"bench-{RUN_ID}",
        HANDOFF_TASK_QUEUE=f"bench-{RUN_ID}",
    )
    return e


def cleanup_redis() -> None:
    """Drop this run's keys: its task queue (no worker consumes it) and its cache prefix."""
    import redis

    client = redis.Redis.from_url(env()["CELERY_BROKER_URL"])
    for key in client.scan_iter(match=f"*bench-{RUN_ID}*"):
        client.delete(key)


def manage(*args: str) -> str:
    return subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env(), check=True, capture_output=True, text=True
    ).stdout


def timed(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict,
    body: bytes | None = None,
) -> tuple[float, int]:
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return time.perf_counter() - started, response.status


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()

    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-qc",
            "DROP DATABASE IF EXISTS handoff_bench",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "CREATE DATABASE handoff_bench"],
        check=True,
        capture_output=True,
    )
    manage("migrate", "--noinput", "-v", "0")
    manage("create_queue", "--slug", "refunds", "--name", "Refunds")
    manage("create_agent", "--name", "bench-agent")
    key = manage("create_agent_key", "--agent", "bench-agent").strip().splitlines()[-1]
    # The benchmark measures latency, not the rate limiter: lift the agent's limits.
    manage(
        "shell",
        "-c",
        "from escalation.models import Agent; Agent.objects.filter("
        "name='bench-agent').update(rate_per_second=1e6, rate_burst=10**6, "
        "max_open_cases=10**7)",
    )

    port = free_port()
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "handoff.asgi:application",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
        ],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        auth = {"Authorization": f"Bearer {key}"}
        json_headers = {**auth, "Content-Type": "application/json"}
        body = json.dumps(
            {
                "queue": "refunds",
                "summary": "Refund of 1,240 EUR exceeds the limit",
                "confidence": 0.42,
                "priority": "high",
                "reason": "low_confidence",
                "context": {
                    "conversation": [{"role": "customer", "text": "Where is my refund?"}] * 5,
                    "order": {"id": "A-77", "lines": list(range(20))},
                },
                "proposed_action": {"type": "refund", "amount": 1240, "currency": "EUR"},
                "metadata": {"tier": "gold", "account_value": 125000},
            }
        ).encode()
        for _ in range(20):  # warm-up
            timed(conn, "GET", "/api/v1/queues", auth)
            timed(conn, "POST", "/api/v1/escalations", json_headers, body)
        baseline, creates = [], []
        for _ in range(args.n):  # interleaved, so drift hits both alike
            elapsed, status = timed(conn, "GET", "/api/v1/queues", auth)
            assert status == 200, status
            baseline.append(elapsed)
            elapsed, status = timed(
                conn,
                "POST",
                "/api/v1/escalations",
                {**json_headers, "Idempotency-Key": uuid.uuid4().hex},
                body,
            )
            assert status == 201, status
            creates.append(elapsed)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        cleanup_redis()
    result = {"n": args.n, "create": summary(creates), "baseline_read": summary(baseline)}
    result["ratio_create_to_read_median"] = round(
        result["create"]["median_ms"] / result["baseline_read"]["median_ms"], 2
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
