"""ASGI entry point: the web process runs under uvicorn workers so the long-poll can wait
without holding a thread or a database connection.

Every other view is sync, and Django's own ASGI handler runs a sync view at a high price: a
new thread per request (its ThreadSensitiveContext), and a hop between the event loop and that
thread for the request signal, the middleware around the view, the view, and the close. For
Handoff's middleware that was seven hops and a thread start, about 1 ms of CPU per request
(1.4 ms for a 401, against 0.3 ms through the same middleware and view without ASGI).
SyncViewsHandler runs the request signal, the whole middleware chain, the view and the
response's close in one call on a thread of a fixed pool. `application` sends each request to
it, or, when the URL resolves to an async view, to Django's handler.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from concurrent.futures import ThreadPoolExecutor

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "handoff.settings")
async_views = get_asgi_application()  # sets Django up

from asgiref.sync import iscoroutinefunction, sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core import signals  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.base import BaseHandler  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from django.urls import Resolver404, resolve, set_script_prefix  # noqa: E402


class SyncViewsHandler(ASGIHandler):
    """Django's ASGI handler with a sync middleware chain, run in one call per request on a
    pool of `threads` threads (a request beyond them waits for one, in order)."""

    def __init__(self, threads: int) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.threads = ThreadPoolExecutor(threads, thread_name_prefix="handoff-web")

    async def handle(self, scope, receive, send) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            # A copy of the context, as sync_to_async gives each call (the request's urlconf,
            # language and time zone live in context variables).
            in_context = contextvars.copy_context().run
            response = await asyncio.get_running_loop().run_in_executor(
                self.threads, in_context, self.respond, scope, body_file
            )
            await self.send_response(response, send)
            if response.streaming:
                # Its content is read while it is sent, through sync_to_async in this
                # request's context (the ThreadSensitiveContext of ASGIHandler.__call__), and
                # closed there, as Django's handler does.
                await sync_to_async(response.close)()
        finally:
            body_file.close()

    def respond(self, scope, body_file):
        """What a sync server does for one request, in the calling thread."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
        response._handler_class = self.__class__
        if response.streaming:
            # The view's connection goes back now; the stream reads through its own.
            close_old_connections()
        else:
            # Its content is in memory: closing it now (request_finished) gives the
            # connection back before the answer is sent.
            response.close()
        return response


sync_views = SyncViewsHandler(settings.HANDOFF_WEB_THREADS)


def _is_async_view(scope) -> bool:
    prefix = get_script_prefix(scope)  # as ASGIRequest finds its path_info
    path = scope["path"].removeprefix(prefix) if prefix else scope["path"]
    try:
        return iscoroutinefunction(resolve(path).func)
    except Resolver404:
        return False


async def application(scope, receive, send) -> None:
    if scope["type"] == "http" and not _is_async_view(scope):
        await sync_views(scope, receive, send)
    else:
        await async_views(scope, receive, send)
