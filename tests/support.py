"""Test helpers that stand up real things on 127.0.0.1: a TCP proxy in front of the machine's
Redis (stop it and the broker is "down" for this test only), and a Celery broker fixture with
its own key prefix so tests never touch anyone else's keys."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from django.db import connection


class TcpProxy:
    """Forward 127.0.0.1:<port> to a target; stop() refuses new connections and cuts live ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll a condition with a bounded wait (never a bare sleep in a test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextlib.contextmanager
def celery_broker(url: str, *, own_prefix: bool = True):
    """Point the Celery app at `url` with a key prefix of this test's own (none when the
    broker is a redis-server of the test's own, shared with worker processes)."""
    from handoff.celery import app

    saved = (app.conf.broker_url, dict(app.conf.broker_transport_options or {}))
    saved_env = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = url  # Celery reads this ahead of its own config
    app.conf.broker_url = url
    prefix = f"handoff-test-{uuid.uuid4().hex[:12]}:" if own_prefix else ""
    if prefix:
        app.conf.broker_transport_options = {**saved[1], "global_keyprefix": prefix}
    app._after_fork()  # drop cached connection and producer pools built for the old URL
    try:
        yield app
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        app._after_fork()
        if prefix:
            _delete_keys(saved_env or url, prefix)


def queued_tasks(client, key: str) -> list[tuple[str, list]]:
    """(task name, outbox ids) of each Celery message waiting in the Redis list `key`, oldest
    first: a run_outbox_item's id, or a run_outbox_items' list of them."""
    found = []
    for raw in reversed(client.lrange(key, 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append((message["headers"]["task"], args[0] if isinstance(args[0], list) else args))
    return found


def _delete_keys(url: str, prefix: str) -> None:
    """Remove what this test left in Redis: only keys under its own prefix."""
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)


TRIGGER = "escalation_auditevent_append_only"


@contextlib.contextmanager
def tampering():
    """What an attacker with table-owner rights does first on PostgreSQL: switch off the
    append-only trigger. (SQLite has no trigger to switch off.)"""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # ALTER TABLE is refused while deferred foreign-key checks are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE escalation_auditevent DISABLE TRIGGER {TRIGGER}")
    try:
        yield
    finally:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(f"ALTER TABLE escalation_auditevent ENABLE ALWAYS TRIGGER {TRIGGER}")


# --- real Celery workers in tests ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def database_url_of_tests(application_name: str) -> str:
    """The pytest-django test database as a DATABASE_URL, for a second process to use."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "postgres")
    if db.get("PASSWORD"):
        credentials += f":{quote(db['PASSWORD'])}"
    return (
        f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        f"?application_name={application_name}"
    )


def log_tail(path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def forget_queue(broker_url: str, queue: str) -> None:
    """Delete every broker key of a test's own queues: the lists, their bindings, and any
    unacknowledged message still parked for them (a worker killed mid-task)."""
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=1)
        mark = queue.encode()
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
        for key in client.scan_iter(match="_kombu.binding.*"):
            stale = [member for member in client.smembers(key) if mark in member]
            if stale:
                client.srem(key, *stale)
        for tag, message in client.hscan_iter("unacked"):
            if mark in message:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
        # kombu keeps a deadline per fanout binding table (the worker's control exchange);
        # one whose table is now gone was left by a test's worker alone.
        for exchange in client.zrange("_kombu.binding_deadlines", 0, -1):
            if not client.exists(b"_kombu.binding." + exchange):
                client.zrem("_kombu.binding_deadlines", exchange)


def worker_env(
    *,
    queue: str,
    var_dir: Path,
    application_name: str,
    extra: dict,
    drop=lambda key: False,
    broker_url: str = "",
    redis_url: str = "",
) -> dict:
    """Environment for a `celery worker` (or a web process) on the test database and a queue
    of the test's own; the broker and Redis are the test settings' unless given."""
    from django.conf import settings

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HANDOFF_SWEEP_QUEUE", "EMAIL_URL"} and not drop(key)
    }
    env.update(extra)
    env.update(
        {
            "DATABASE_URL": database_url_of_tests(application_name),
            "CELERY_BROKER_URL": broker_url or settings.CELERY_BROKER_URL,
            "REDIS_URL": redis_url or settings.REDIS_URL,
            "HANDOFF_CACHE_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", "handoff"),
            "HANDOFF_TASK_QUEUE": queue,
            "HANDOFF_VAR_DIR": str(var_dir),
            "DJANGO_SECRET_KEY": "test-only",
        }
    )
    return env


class CeleryWorker:
    """A real `celery worker -B` in its own process group, started and stopped by PID."""

    def __init__(
        self, *, env: dict, queue: str, name: str, log_path: Path, schedule: Path, pool: str
    ) -> None:
        self.log_path = log_path
        celery = Path(sys.executable).parent / "celery"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(celery),
                    "-A",
                    "handoff",
                    "worker",
                    "-B",
                    "-l",
                    "info",
                    "--pool",
                    pool,
                    "--concurrency",
                    "2",
                    "-Q",
                    f"{queue},{queue}-sweeps",
                    "-n",
                    f"{name}@%h",  # its control queue carries the unique name too
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-s",
                    str(schedule),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"worker exited:\n{log_tail(self.log_path)}"
            text = self.log_path.read_text(errors="replace")
            return " ready." in text and "beat: Starting" in text

        assert wait_until(ready, timeout=timeout, interval=0.1), (
            f"worker did not start:\n{log_tail(self.log_path)}"
        )

    def kill(self) -> None:
        """SIGKILL to the whole process group: main process, pool children, embedded beat."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


# --- processes of a test's own: Redis and the web server ---------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


class RedisServer:
    """A redis-server of the test's own on a free port of 127.0.0.1 (never the machine's
    shared one), without persistence: after kill() and start() it comes back empty, as a lost
    Redis would. Started and stopped by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        assert wait_until(self.answers, timeout=10), "redis-server did not start"
        return self

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: whatever it held (queued messages, bindings, unacked tasks) is gone."""
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait(timeout=10)


class WebServer:
    """The production web process (gunicorn with uvicorn workers) on a port of the test's own,
    in its own process group. restart() keeps the port."""

    def __init__(self, *, env: dict, log_path: Path, graceful_timeout: int = 30) -> None:
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.graceful_timeout = graceful_timeout
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> WebServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "handoff.asgi:application"]
                + ["-k", "uvicorn_worker.UvicornWorker", "-b", f"127.0.0.1:{self.port}"]
                + ["-w", "1", "--graceful-timeout", str(self.graceful_timeout)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        assert wait_until(lambda: port_open(self.port), timeout=timeout, interval=0.1), (
            f"web server did not start:\n{log_tail(self.log_path)}"
        )
        return self

    def stop(self, timeout: float = 40) -> None:
        """SIGTERM, as a deploy or a supervisor does: gunicorn finishes what is in flight."""
        if self.process is None or self.process.poll() is not None:
            return
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextlib.contextmanager
def served_tests_database(log_dir: Path, application_name: str, **extra_env: str):
    """The production web process (one worker) on the pytest-django test database, with a
    pool of two connections named `application_name`; yields its port. Its routing tasks go to
    a queue of its own, deleted afterwards: nothing consumes it."""
    from django.conf import settings

    task_queue = f"handoff-test-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "HANDOFF_TASK_QUEUE": task_queue,
        "DATABASE_URL": database_url_of_tests(application_name),
        "DATABASE_POOL_MAX_SIZE": "2",
        "DATABASE_POOL_MIN_SIZE": "1",
        "DJANGO_SECRET_KEY": "test-only",
        "REDIS_URL": settings.REDIS_URL,
        "HANDOFF_CACHE_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", "handoff"),
        **extra_env,
    }
    web = WebServer(env=env, log_path=log_dir / "web.log")
    try:
        yield web.start().port
    finally:
        web.stop()
        forget_queue(settings.CELERY_BROKER_URL, task_queue)


# --- races -------------------------------------------------------------------------------------


def at_once(calls: list[Callable[[], object]], timeout: float = 60) -> list[object]:
    """Run every call in a thread of its own, released together by a barrier; return each
    call's result (or the exception it raised), in order."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            results[index] = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(index, call), daemon=True)
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    stuck = [index for index, thread in enumerate(threads) if thread.is_alive()]
    assert not stuck, f"calls {stuck} did not finish within {timeout} s (a deadlock or a hang)"
    return results


def http_json(
    port: int,
    method: str,
    path: str,
    *,
    key: str = "",
    body: dict | None = None,
    headers: dict | None = None,
    timeout: float = 20,
) -> tuple[int, dict, dict]:
    """One request to a server of the test's own: (status, JSON body or {}, headers)."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    try:
        conn.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=sent
        )
        response = conn.getresponse()
        raw = response.read()
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        is_json = answer_headers.get("content-type", "").startswith("application/json")
        return response.status, json.loads(raw) if is_json and raw else {}, answer_headers
    finally:
        conn.close()


def events_per_case(verb: str) -> dict:
    """{case id: how many `verb` audit events it has}, for "exactly once" checks."""
    from escalation.models import AuditEvent

    counts: dict = {}
    for case_id in AuditEvent.objects.filter(verb=verb).values_list("escalation_id", flat=True):
        counts[case_id] = counts.get(case_id, 0) + 1
    return counts
