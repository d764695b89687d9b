"""Browser tests: a real Chromium (Debian's, see `make chromium`) driving the reviewer UI served
by pytest-django's live_server (static files through the finders, as in production without
collectstatic).

Playwright's sync API keeps an asyncio loop running on the test thread for as long as Playwright
is started, and Django's ORM refuses calls from a thread with a running loop ("You cannot call
this from an async context"). So, for the browser tests only: DJANGO_ALLOW_ASYNC_UNSAFE is set
and Playwright runs (package scope) while this package's tests run, and both are undone before
any other test in the same worker, whose async-safety checks (and `check --deploy`, which refuses
that variable) stay intact.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    BrowserType,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

pytest.register_assert_rewrite("tests.browser.helpers")

from tests.browser.helpers import ARTIFACTS, ConsoleWatch, screenshot, sign_in  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    path = os.environ.get("HANDOFF_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(f"no Chromium at {path}: run `make chromium` (make test does it)")
    return path


@pytest.fixture(scope="package", autouse=True)
def _orm_beside_playwright() -> Iterator[None]:
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if saved is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


# pytest-playwright's own playwright, browser_type, launch_browser and browser are session-wide;
# these narrow them to this package (see the module docstring).
@pytest.fixture(scope="package")
def playwright(_orm_beside_playwright: None) -> Iterator[Playwright]:
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name)


@pytest.fixture(scope="package")
def launch_browser(
    browser_type_launch_args: dict, browser_type: BrowserType
) -> Callable[..., Browser]:
    def launch(**kwargs) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": chromium_path(), "args": CHROMIUM_ARGS}


@pytest.fixture
def browser_context_args(live_server) -> dict:
    # Relative URLs (page.goto("/inbox/")) go to this worker's live server.
    return {"base_url": live_server.url, "viewport": {"width": 1280, "height": 900}}


@pytest.fixture(autouse=True)
def _short_playwright_timeouts(context: BrowserContext) -> None:
    # Bounded waits: nothing in these pages should take more than a few seconds.
    context.set_default_timeout(10_000)
    expect.set_options(timeout=10_000)


@pytest.fixture
def console(context: BrowserContext) -> ConsoleWatch:
    """Watches the default context (the one `page` lives in); .watch() adds others."""
    recorder = ConsoleWatch()
    recorder.watch(context)
    return recorder


@pytest.fixture
def fresh_browser_page(
    request: pytest.FixtureRequest,
    launch_browser: Callable[..., Browser],
    browser_context_args: dict,
) -> Iterator[tuple[Page, ConsoleWatch]]:
    """A page in a browser process of its own, as a person's browser meets the site for the
    first time (nothing cached, favicon included), watched strictly."""
    browser = launch_browser()
    try:
        recorder = ConsoleWatch(strict=True)
        context = recorder.watch(browser.new_context(**browser_context_args))
        context.set_default_timeout(10_000)
        page = context.new_page()
        yield page, recorder
        if _failed(request):
            _shoot_failure(request, page, "fresh")
    finally:
        browser.close()


_CALL_FAILED = pytest.StashKey[bool]()


def _failed(request: pytest.FixtureRequest) -> bool:
    return request.node.stash.get(_CALL_FAILED, False)


def _failure_prefix(request: pytest.FixtureRequest) -> str:
    return "failed-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")


def _shoot_failure(request: pytest.FixtureRequest, page: Page, who: str) -> None:
    if not page.is_closed() and page.url != "about:blank":
        screenshot(page, f"{_failure_prefix(request)}-{who}.png")


@pytest.fixture
def signed_in(
    request: pytest.FixtureRequest,
    new_context: Callable[..., BrowserContext],
    console: ConsoleWatch,
) -> Iterator[Callable[[str], Page]]:
    """signed_in("bob"): a page of a fresh browser context (own cookies), signed in as bob."""
    opened: list[tuple[str, Page]] = []

    def open_as(username: str) -> Page:
        context = console.watch(new_context())
        context.set_default_timeout(10_000)
        page = context.new_page()
        opened.append((username, page))
        sign_in(page, username)
        return page

    yield open_as
    if _failed(request):
        for username, page in opened:
            _shoot_failure(request, page, username)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call) -> Iterator:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request: pytest.FixtureRequest, page: Page) -> Iterator[None]:
    """A failed test leaves a picture of where it stopped: test-artifacts/failed-<test>-*.png."""
    yield
    if _failed(request):
        _shoot_failure(request, page, "page")
    else:  # a pass clears this test's pictures of an earlier failure
        for stale in ARTIFACTS.glob(f"{_failure_prefix(request)}-*.png"):
            stale.unlink(missing_ok=True)
