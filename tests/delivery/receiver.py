"""A webhook receiver for the delivery tests: a real HTTP server on 127.0.0.1, in a thread,
that records every request (headers, body, arrival time) and every TCP connection, and answers
from a script: a status per request (the last one repeats), optionally after a pause, with a
Location header, or with a huge body."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay: float = 0.0  # seconds to wait before answering (a slow or hung receiver)
    location: str = ""  # a Location header (redirects)
    huge: int = 0  # when set, a body of this many bytes instead of "ok" (the read cap)
    drip: float = 0.0  # when set, a header trickles out one byte per `drip` seconds...
    drip_bytes: int = 0  # ...this many bytes long (a slow-loris receiver)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the request had been read
    reply: Reply = field(default_factory=Reply)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def signatures(self) -> list[str]:
        return self.headers["webhook-signature"].split(" ")

    def verify(self, secret: str):
        """standardwebhooks' own verification of this request; returns the parsed body."""
        return Webhook(secret).verify(self.body, self.headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: Receiver

    def get_request(self):
        request = super().get_request()
        with self.receiver._lock:
            self.receiver.connections += 1
        return request


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _handle(self) -> None:
        try:
            self._answer()
        finally:
            with self.server.receiver._lock:
                self.server.receiver.finished += 1

    def _answer(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = receiver._next_reply()
        received = Received(self.command, self.path, headers, body, time.time(), reply)
        with receiver._lock:
            receiver.requests.append(received)
        if reply.delay and receiver._stopping.wait(reply.delay):
            return
        try:
            if reply.drip:
                self._trickle(reply)
                return
            self.send_response(reply.status)
            if reply.location:
                self.send_header("Location", reply.location)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(reply.huge or 2))
            self.end_headers()
            if not reply.huge:
                self.wfile.write(b"ok")
                return
            remaining, chunk = reply.huge, b"x" * 65536
            while remaining > 0 and not receiver._stopping.is_set():
                piece = chunk[: min(remaining, len(chunk))]
                self.wfile.write(piece)
                remaining -= len(piece)
                with receiver._lock:
                    receiver.bytes_sent += len(piece)
        except OSError:
            pass  # the client went away (timed out, killed, or stopped reading)

    def _trickle(self, reply: Reply) -> None:
        """The status line at once, then a header one byte at a time, every byte in time to
        beat any per-read timeout, then the rest."""
        stopping = self.server.receiver._stopping
        self.wfile.write(f"HTTP/1.0 {reply.status} Whatever\r\nX-Slow: ".encode())
        self.wfile.flush()
        for _ in range(reply.drip_bytes):
            if stopping.wait(reply.drip):
                return
            self.wfile.write(b"z")
            self.wfile.flush()
        self.wfile.write(b"\r\nContent-Length: 2\r\n\r\nok")

    do_POST = do_GET = do_PUT = _handle


class Receiver:
    """Start with a script of replies (ints or Reply); `url` is where it listens."""

    def __init__(self, script=(200,)) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[Received] = []
        self.connections = 0
        self.finished = 0  # requests whose handling is over (answered, or the client gone)
        self.bytes_sent = 0
        self._script: list[Reply] = []
        self._served = 0
        self.answer(*script)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def answer(self, *script) -> Receiver:
        """Replace the script; it applies to the requests from now on."""
        replies = [item if isinstance(item, Reply) else Reply(status=item) for item in script]
        assert replies, "a receiver needs at least one reply"
        with self._lock:
            self._script, self._served = replies, 0
        return self

    def _next_reply(self) -> Reply:
        with self._lock:
            reply = self._script[min(self._served, len(self._script) - 1)]
            self._served += 1
            return reply

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(Exception):
            self._server.shutdown()
        self._server.server_close()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)
