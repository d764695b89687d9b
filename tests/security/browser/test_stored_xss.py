"""Stored XSS in a real Chromium: an agent puts hostile markup in every field it controls
(summary, external id, context, proposed action, metadata, agent version, a context update, the
callback URL of a delivery, a receiver's error text), and people open every page that shows it.
Nothing runs and nothing fires: no script, no handler, no htmx request from an injected hx-*
attribute, no `javascript:` link, no request to a probe URL, no dialog, and not one CSP
violation (a blocked injection would be one). The payloads show as text.

The same strings are checked in the HTML by tests/web/test_xss.py; this is the browser's view.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from escalation import autonomy, transitions
from escalation.audit import Actor
from escalation.models import Delivery, DeliveryStatus
from tests.api.helpers import resolve_case
from tests.browser.helpers import ConsoleWatch
from tests.factories import make_case
from tests.security.routes import MANAGER_OBJECT_PAGES, MANAGER_PAGES, web_path

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROBE = "/xss-probe/"
# The first ones fit in a summary (200 characters), so they reach every page.
PAYLOADS = [
    f'<div hx-get="{PROBE}hx" hx-trigger="load">hx</div>',
    f'" hx-get="{PROBE}attr" hx-trigger="load" autofocus onfocus="window.__xss=\'attr\'" x="',
    f'<img src="{PROBE}img" onerror="window.__xss=\'img\'">',
    f"<script src=\"{PROBE}script\"></script><script>window.__xss='script'</script>",
    "<svg onload=\"window.__xss='svg'\"></svg>",
    "' onmouseover='window.__xss=1' '",
    f'<div hx-on::load="window.__xss=\'hx-on\'" hx-post="{PROBE}hxpost" hx-trigger="load"></div>',
    f'<iframe src="{PROBE}frame"></iframe>',
    f'<meta http-equiv="refresh" content="0;url={PROBE}meta">',
    f'<base href="{PROBE}base/">',
    f'<form action="{PROBE}form"><button>go</button></form>',
    "<a href=\"javascript:window.__xss='link'\">link</a>",
    "javascript:window.__xss='url'",
    f'</textarea><img src="{PROBE}textarea">',
    f'</script><img src="{PROBE}json">',
]
HOSTILE = " ".join(PAYLOADS)
DOWNLOADS = {"manage-audit-export", "manage-export-labels"}  # files, not pages


def hostile_json() -> dict:
    return {
        HOSTILE: HOSTILE,
        "url": "javascript:window.__xss='url'",
        "href": "javascript:window.__xss='href'",
        "conversation": [
            {"role": HOSTILE, "text": HOSTILE},
            {"role": "customer", "text": "javascript:window.__xss='turn'"},
        ],
        "records": {HOSTILE: [HOSTILE, {"link": "javascript:window.__xss='rec'"}]},
        "letter": HOSTILE * 8,  # long enough to be folded
    }


@pytest.fixture
def hostile_cases(agent, refunds, alice, bob):
    """A claimed hostile case (held by alice), a breached one, a resolved one with a dead
    delivery whose URL and error text are hostile too."""
    now = timezone.now()
    fields = {
        "summary": HOSTILE[:200],
        "external_id": HOSTILE[:255],
        "context": hostile_json(),
        "proposed_action": hostile_json(),
        "metadata": hostile_json(),
        "agent_version": HOSTILE[:100],
    }
    held = make_case(agent=agent, queue=refunds, **fields)
    transitions.append_context(
        actor=Actor.for_agent(agent), case_id=held.pk, note=HOSTILE, data=hostile_json()
    )
    transitions.claim(actor=Actor.for_user(alice), case_id=held.pk)
    breached = make_case(agent=agent, queue=refunds, now=now - timedelta(hours=3), **fields)
    resolved = make_case(agent=agent, queue=refunds, now=now - timedelta(hours=1), **fields)
    resolve_case(resolved, bob, decision="modify", final_action=hostile_json(), note=HOSTILE)
    Delivery.objects.create(
        webhook_id="msg_hostile",
        escalation=resolved,
        agent=agent,
        event_type="escalation.resolved",
        url="https://agent.example.com/" + HOSTILE[:300],
        body="{}",
        status=DeliveryStatus.DEAD,
        attempts=3,
        last_error=HOSTILE[:500],
        dead_at=now,
    )
    return {"held": held, "breached": breached, "resolved": resolved}


class Tripwire:
    """Everything an injection could do that a page must not."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.probes: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", lambda r: self.probes.append(r.url) if PROBE in r.url else None)
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def visit(self, path: str) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status == 200, (path, response)
        self.page.wait_for_load_state("networkidle")
        # Every fold opened, as a reader would (nested ones too).
        self.page.evaluate("document.querySelectorAll('details').forEach((d) => (d.open = true))")
        self.page.mouse.move(200, 300)
        self.page.wait_for_timeout(100)
        self.check(path)

    def check(self, where: str) -> None:
        page = self.page
        assert page.evaluate("window.__xss") is None, (where, page.evaluate("window.__xss"))
        assert self.probes == [], (where, self.probes)
        assert self.dialogs == [], (where, self.dialogs)
        bad = page.evaluate(
            """(probe) => [...document.querySelectorAll('*')].flatMap((el) =>
                [...el.attributes]
                  .filter((a) => (/^(on|hx-|href$|src$|action$|formaction$|http-equiv$)/i
                                   .test(a.name))
                                 && (a.value.includes(probe) || a.name.startsWith('on')
                                     || /^\\s*javascript:/i.test(a.value)))
                  .map((a) => el.tagName + ' ' + a.name + '=' + a.value.slice(0, 60)))""",
            PROBE,
        )
        assert bad == [], (where, bad)
        for tag in ("iframe", "base", "meta[http-equiv]", "svg[onload]", "script:not([src])"):
            assert page.locator(tag).count() == 0, (where, tag)


def test_hostile_agent_content_is_inert_on_every_reviewer_page(
    signed_in, console: ConsoleWatch, hostile_cases, agent
):
    page = signed_in("alice")
    wire = Tripwire(page)
    held = hostile_cases["held"]

    wire.visit("/inbox/")
    expect(page.locator("#case-list")).to_contain_text('hx-get="/xss-probe/hx"')
    wire.visit("/inbox/?q=onerror")
    expect(page.locator("#case-list")).to_contain_text("onerror")
    wire.visit(f"/cases/{held.pk}/")  # alice holds it: the decision form shows the proposal
    expect(page.locator("textarea[name=final_action]")).to_contain_text("/xss-probe/textarea")
    # A new hostile update arrives through the page's own htmx poll.
    transitions.append_context(
        actor=Actor.for_agent(agent), case_id=held.pk, note="late " + HOSTILE, data=hostile_json()
    )
    expect(page.locator("#updates")).to_contain_text("late ", timeout=12_000)
    wire.check("updates poll")
    wire.visit(f"/cases/{hostile_cases['breached'].pk}/")
    wire.visit(f"/cases/{hostile_cases['resolved'].pk}/")

    assert console.csp_violations == []
    assert console.errors == []


def test_hostile_agent_content_is_inert_on_every_manager_page(
    signed_in, console: ConsoleWatch, hostile_cases, mona
):
    page = signed_in("mona")
    wire = Tripwire(page)
    resolved = hostile_cases["resolved"]

    # The hostile agent version names a scope too (the Autonomy table and the scope page).
    scope = autonomy.scope_for(
        resolved.agent, resolved.agent_version, resolved.queue, timezone.now()
    )
    objects = {
        "case": resolved,
        "delivery": Delivery.objects.get(),
        "agent": resolved.agent,
        "scope": scope,
    }
    pages = MANAGER_PAGES | MANAGER_OBJECT_PAGES
    for name in sorted(n for n, method in pages.items() if method == "GET" and n not in DOWNLOADS):
        path = web_path(name, objects)
        wire.visit(path)
        if path.startswith(("/manage/audit/cases/", "/manage/sla/", "/manage/deliveries/")):
            expect(page.locator("main")).to_contain_text("/xss-probe/")  # shown, as text

    assert console.csp_violations == []
    assert console.errors == []
