"""The browser fixtures of tests/browser (Chromium, live server, console and CSP watch), for
the security checks that need a real browser."""

from tests.browser.conftest import *  # noqa: F403
from tests.browser.conftest import (  # noqa: F401 - the autouse ones and the failure hook
    _orm_beside_playwright,
    _screenshot_on_failure,
    _short_playwright_timeouts,
    pytest_runtest_makereport,
)
