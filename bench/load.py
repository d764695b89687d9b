"""The load generator, run by bench/run.py as a second process (standard library + psycopg, no
Django), so the load's own CPU is not the server's. Each mode prints one JSON object.

    load.py http --port P --path /api/v1/escalations --body FILE [--header K:V] -c 8 -s 5
    load.py raw --dsn DSN --sql FILE [--rows 100] -c 8 -s 5
    load.py waiters --port P --key KEY --ids FILE --wait 30

`http`: c threads, one keep-alive connection each, POSTing the body until s seconds pass.
`raw`: c threads, one psycopg connection each, each transaction `rows` INSERTs (the SQL file
holds one INSERT of the row, its id spelled {ID}) and a COMMIT.
`waiters`: one long-poll per case id, all open at once (asyncio), each answer's status and
wall-clock time (time.time(), comparable with the resolver's in the same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import sys
import threading
import time
import uuid


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summary(latencies: list[float], elapsed: float, errors: dict[str, int], units: int) -> dict:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "units_per_s": round(len(ordered) * units / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "errors": errors,
    }


def run_threads(worker, concurrency: int, seconds: float, units: int) -> dict:
    """Start `concurrency` workers together; each appends latencies until the deadline."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def loop() -> None:
        own, own_errors = [], {}
        try:
            step = worker()
            barrier.wait(timeout=60)
        except Exception as exc:  # noqa: BLE001 - no connection (max_connections): reported
            with lock:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            barrier.abort()
            return
        while time.perf_counter() < deadline[0]:
            started = time.perf_counter()
            try:
                outcome = step()
            except Exception as exc:  # noqa: BLE001 - counted, the loop goes on
                outcome = type(exc).__name__
            if outcome is None:
                own.append(time.perf_counter() - started)
            else:
                own_errors[outcome] = own_errors.get(outcome, 0) + 1
        with lock:
            latencies.extend(own)
            for key, n in own_errors.items():
                errors[key] = errors.get(key, 0) + n

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return summary(latencies, time.perf_counter() - started, errors, units)


def http_worker(
    port: int, path: str, body: bytes, headers: dict, expect: set[int], fresh_key=False
):
    """`fresh_key`: each request with an Idempotency-Key of its own, as an agent retrying
    safely sends (so the service does its idempotency bookkeeping on every create)."""

    def make():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        own = dict(headers)  # one per thread

        def step() -> str | None:
            nonlocal conn
            if fresh_key:
                own["Idempotency-Key"] = uuid.uuid4().hex
            try:
                conn.request("POST", path, body=body, headers=own)
                response = conn.getresponse()
                response.read()
            except OSError as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                return type(exc).__name__
            return None if response.status in expect else str(response.status)

        return step

    return make


def raw_worker(dsn: str, sql: str, rows: int):
    import psycopg

    def make():
        conn = psycopg.connect(dsn)

        def step() -> str | None:
            text = ";".join(sql.replace("{ID}", uuid.uuid4().hex) for _ in range(rows))
            try:
                with conn.cursor() as cursor:
                    cursor.execute(text)
                conn.commit()
            except psycopg.Error:
                conn.rollback()
                raise
            return None

        return step

    return make


async def wait_one(port: int, key: str, case_id: str, wait: int) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET /api/v1/escalations/{case_id}/resolution?wait={wait} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    status_line = await reader.readline()
    at = time.time()
    await reader.read()
    writer.close()
    status = int(status_line.split()[1]) if status_line else 0
    return {"id": case_id, "status": status, "at": at}


async def waiters(port: int, key: str, ids: list[str], wait: int) -> list[dict]:
    async def guarded(case_id: str) -> dict:
        try:
            return await asyncio.wait_for(wait_one(port, key, case_id, wait), wait + 30)
        except (TimeoutError, OSError) as exc:
            return {"id": case_id, "status": 0, "at": time.time(), "error": repr(exc)}

    return await asyncio.gather(*(guarded(case_id) for case_id in ids))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["http", "raw", "waiters"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--path", default="/api/v1/escalations")
    parser.add_argument("--body")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--expect", default="200,201")
    parser.add_argument("--units", type=int, default=1, help="cases per request")
    parser.add_argument("--fresh-key", action="store_true", help="an Idempotency-Key each")
    parser.add_argument("--dsn")
    parser.add_argument("--sql")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-s", "--seconds", type=float, default=5)
    parser.add_argument("--key")
    parser.add_argument("--ids")
    parser.add_argument("--wait", type=int, default=30)
    args = parser.parse_args()
    if args.mode == "http":
        headers = dict(h.split(":", 1) for h in args.header)
        headers["Content-Type"] = "application/json"
        with open(args.body, "rb") as f:
            body = f.read()
        expect = {int(s) for s in args.expect.split(",")}
        make = http_worker(args.port, args.path, body, headers, expect, args.fresh_key)
        result = run_threads(make, args.concurrency, args.seconds, args.units)
    elif args.mode == "raw":
        with open(args.sql) as f:
            sql = f.read()
        make = raw_worker(args.dsn, sql, args.rows)
        result = run_threads(make, args.concurrency, args.seconds, args.rows)
    else:
        with open(args.ids) as f:
            ids = json.load(f)
        print("ready", file=sys.stderr, flush=True)
        result = {"answers": asyncio.run(waiters(args.port, args.key, ids, args.wait))}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
