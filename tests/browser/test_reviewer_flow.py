"""A reviewer's working loop in a real browser: inbox, Next case, an agent's hostile content
shown as text, Modify with a JSON mistake and its fix, the next case opening, the agent seeing
the decision; Approve from the keyboard; clean consoles under the CSP."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from escalation.models import Decision, Priority, Status
from tests.browser.helpers import (
    INBOX_URL,
    ConsoleWatch,
    api_get,
    case_id_of,
    fresh,
    screenshot,
    sign_in,
)
from tests.factories import make_case

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = "<script>window.__xss=1</script>"
HOSTILE_SUMMARY = f"Refund {XSS_IMG} {XSS_SCRIPT} for order 7781"
HOSTILE_CONTEXT = {
    "conversation": [
        {"role": "customer", "text": f"Please refund me {XSS_SCRIPT}"},
        {"role": "assistant", "text": f"Looking into it {XSS_IMG}"},
    ],
    "order": {"id": "7781", "note": XSS_SCRIPT, "picture": XSS_IMG},
}


def case_url(case) -> re.Pattern:
    return re.compile(rf"/cases/{case.pk}/$")


@pytest.fixture
def worklist(agent, refunds, support):
    """Four open cases whose urgency is not their priority order: the high-priority one was
    posted 14 minutes ago, so its claim target (15 min) comes before the urgent one's (5 min
    from now)."""
    now = timezone.now()
    return {
        "low": make_case(
            agent=agent, queue=support, priority=Priority.LOW, summary="Address change request"
        ),
        "normal": make_case(
            agent=agent,
            queue=refunds,
            summary="Duplicate charge on card",
            now=now - timedelta(minutes=30),
        ),
        "urgent": make_case(
            agent=agent, queue=refunds, priority=Priority.URGENT, summary="Chargeback threat"
        ),
        "hostile": make_case(
            agent=agent,
            queue=refunds,
            priority=Priority.HIGH,
            summary=HOSTILE_SUMMARY,
            reason="amount_over_limit",
            context=HOSTILE_CONTEXT,
            proposed_action={"type": "refund", "amount": 1240, "memo": XSS_IMG},
            now=now - timedelta(minutes=14),
        ),
    }


def test_reviewer_takes_next_case_modifies_it_and_the_next_one_opens(
    page: Page, live_server, alice, agent, worklist
):
    hostile, urgent = worklist["hostile"], worklist["urgent"]
    sign_in(page, "alice")

    rows = page.locator("tr.case-row")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text(XSS_SCRIPT)  # most urgent first, and shown as text
    expect(rows.nth(1)).to_contain_text("Chargeback threat")
    screenshot(page, "inbox.png")

    page.get_by_role("button", name="Next case").click()
    expect(page).to_have_url(case_url(hostile))
    claimed = fresh(hostile)
    assert (claimed.status, claimed.claimed_by) == (Status.CLAIMED, alice)

    # Agent-supplied HTML is text: visible literally, never run, never an element.
    expect(page.get_by_role("heading", level=1)).to_have_text(HOSTILE_SUMMARY)
    expect(page.locator(".transcript")).to_contain_text(f"Please refund me {XSS_SCRIPT}")
    expect(page.locator(".transcript")).to_contain_text(XSS_IMG)
    assert XSS_SCRIPT in page.locator("main").inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, main script").count() == 0
    screenshot(page, "case.png")

    # A JSON mistake is reported in the page; nothing is decided and the claim stays.
    editor = page.get_by_label("Final action (JSON)")
    editor.fill('{"type": "refund", "amount": 600,')
    page.get_by_role("button", name="Modify").click()
    expect(page.locator("#decision").get_by_role("alert")).to_contain_text("not valid JSON")
    expect(page).to_have_url(case_url(hostile))
    still = fresh(hostile)
    assert (still.status, still.claimed_by) == (Status.CLAIMED, alice)
    screenshot(page, "case-invalid-json.png")

    # Fixed, the modification is recorded and the next most urgent case opens, claimed.
    page.get_by_label("Final action (JSON)").fill(
        '{"type": "refund", "amount": 600, "currency": "EUR"}'
    )
    page.get_by_role("button", name="Modify").click()
    expect(page).to_have_url(case_url(urgent))
    expect(page.get_by_role("heading", level=1)).to_have_text("Chargeback threat")
    expect(page.locator("#messages")).to_contain_text("Decided: modify.")
    decided = fresh(hostile)
    assert decided.status == Status.RESOLVED
    assert decided.resolution.decision == Decision.MODIFY
    assert decided.resolution.final_action == {"type": "refund", "amount": 600, "currency": "EUR"}
    assert decided.resolution.resolved_by == alice
    upcoming = fresh(urgent)
    assert (upcoming.status, upcoming.claimed_by) == (Status.CLAIMED, alice)

    # The agent sees the decision through its API.
    status, body = api_get(live_server.url, agent, f"/api/v1/escalations/{hostile.pk}")
    assert status == 200
    assert body["status"] == "resolved"
    assert body["resolution"]["decision"] == "modify"
    assert body["resolution"]["final_action"] == {
        "type": "refund",
        "amount": 600,
        "currency": "EUR",
    }


def test_claim_then_approve_with_the_keyboard(page: Page, alice, agent, refunds):
    case = make_case(agent=agent, queue=refunds, summary="Refund of 80 EUR, receipt attached")
    sign_in(page, "alice")
    page.goto(f"/cases/{case.pk}/")
    page.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("button", name="Approve")).to_be_visible()
    assert fresh(case).claimed_by == alice

    page.keyboard.press("a")
    # It was the last open case: back to the inbox, told so.
    expect(page).to_have_url(INBOX_URL)
    expect(page.locator("#messages")).to_contain_text("Decided: approve.")
    expect(page.locator("#messages")).to_contain_text("That was the last open case")
    decided = fresh(case)
    assert decided.status == Status.RESOLVED
    assert decided.resolution.decision == Decision.APPROVE
    assert decided.resolution.resolved_by == alice


def test_no_console_errors_or_csp_violations_from_sign_in_to_case_page(
    fresh_browser_page: tuple[Page, ConsoleWatch], alice, worklist
):
    page, console = fresh_browser_page  # a first visit: nothing cached in this browser
    sign_in(page, "alice")
    expect(page.locator("tr.case-row")).to_have_count(4)
    page.keyboard.press("?")  # the scripts run: shortcuts and the help overlay
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")  # (the inbox's own poll is watched in test_inbox.py)

    page.get_by_role("button", name="Next case").click()
    expect(page).to_have_url(case_url(worklist["hostile"]))
    case_id = case_id_of(page)
    with page.expect_response(re.compile(rf"/cases/{case_id}/updates/"), timeout=10_000) as upd:
        pass  # the context-updates poll (every 5 s)
    assert upd.value.status in (200, 204)
    assert page.evaluate("window.__xss") is None

    assert console.csp_violations == []
    assert console.errors == []
