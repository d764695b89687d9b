"""Shared pieces of the browser tests: signing in through the real form, screenshots in
test-artifacts/, a recorder of console errors and CSP violations, and the database checks."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect

from escalation.models import AgentKey, Escalation
from tests.factories import PASSWORD

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"  # gitignored
CASE_URL = re.compile(r"/cases/(?P<id>[0-9a-f-]{36})/$")
INBOX_URL = re.compile(r"/inbox/$")
CSP = "Content Security Policy"
# Each violation also reported through the console, so it is caught whatever wording Chromium's
# own message has. Init scripts are not subject to the page's CSP.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error("Content Security Policy violation: " + e.violatedDirective + " blocked "
                + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Through the real login form, landing on the inbox."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(INBOX_URL)


def case_id_of(page: Page) -> str:
    match = CASE_URL.search(page.url)
    assert match, f"not on a case page: {page.url}"
    return match["id"]


def fresh(case: Escalation) -> Escalation:
    return Escalation.objects.select_related("claimed_by").get(pk=case.pk)


def api_get(live_server_url: str, agent, path: str) -> tuple[int, dict]:
    """A real HTTP request to the agent API of the live server, with a fresh key of `agent`."""
    _, raw = AgentKey.generate(agent)
    request = urllib.request.Request(
        live_server_url + path, headers={"Authorization": f"Bearer {raw}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local server
        return response.status, json.loads(response.read())


class ConsoleWatch:
    """Console errors, uncaught page errors and CSP violations of every watched context.

    Chromium asks every site for /favicon.ico and remembers a 404 for the life of the browser
    process, so that one error shows up only in the first test a worker runs. A lenient watch
    leaves it out, so that tests do not depend on their order; a strict one (used with a fresh
    browser) keeps it.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.errors: list[str] = []

    def watch(self, context: BrowserContext) -> BrowserContext:
        context.add_init_script(CSP_LISTENER)
        context.on("console", self._on_console)
        context.on("weberror", lambda error: self.errors.append(f"uncaught: {error.error}"))
        return context

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error" and CSP not in message.text:
            return
        source = message.location.get("url", "")
        if not self.strict and source.endswith("/favicon.ico"):
            return
        where = message.page.url if message.page else "?"
        self.errors.append(f"{message.type} on {where} (from {source}): {message.text}")

    @property
    def csp_violations(self) -> list[str]:
        return [text for text in self.errors if CSP in text]
