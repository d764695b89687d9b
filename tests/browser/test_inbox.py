"""The inbox in a browser: keyboard selection, the help overlay, and live arrival of cases."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import ConsoleWatch, screenshot, sign_in
from tests.factories import make_case

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_keyboard_selects_rows_opens_one_and_toggles_help(page: Page, alice, agent, refunds):
    first = make_case(agent=agent, queue=refunds, priority="urgent", summary="First by urgency")
    make_case(agent=agent, queue=refunds, summary="Second by urgency")
    sign_in(page, "alice")
    rows = page.locator("tr.case-row")
    expect(rows).to_have_count(2)
    expect(page.locator("tr.case-row.selected")).to_have_count(0)

    page.keyboard.press("j")
    expect(rows.first).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator("tr.case-row.selected")).to_have_count(1)
    page.keyboard.press("j")
    expect(rows.nth(1)).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("k")
    expect(rows.first).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator("tr.case-row.selected")).to_have_count(1)

    help_overlay = page.locator("#help")
    expect(help_overlay).to_be_hidden()
    page.keyboard.press("?")
    expect(help_overlay).to_be_visible()
    expect(help_overlay).to_contain_text("Keyboard")
    screenshot(page, "inbox-help.png")
    page.keyboard.press("?")
    expect(help_overlay).to_be_hidden()
    page.keyboard.press("?")
    page.keyboard.press("Escape")
    expect(help_overlay).to_be_hidden()

    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/cases/{first.pk}/$"))


def test_new_case_appears_without_a_reload(
    page: Page, console: ConsoleWatch, alice, agent, refunds
):
    make_case(agent=agent, queue=refunds, summary="Already waiting")
    sign_in(page, "alice")
    expect(page.locator("tr.case-row")).to_have_count(1)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    make_case(agent=agent, queue=refunds, priority="urgent", summary="Arrived while watching")
    expect(page.get_by_text("Arrived while watching")).to_be_visible(timeout=15_000)
    expect(page.locator("tr.case-row")).to_have_count(2)
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "inbox-live-update.png")
    assert console.errors == []
