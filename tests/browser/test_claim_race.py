"""Two reviewers press Next case at the same moment for the last open case: exactly one gets it."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from escalation.models import Escalation, Status
from tests.browser.helpers import CASE_URL, INBOX_URL, fresh
from tests.factories import make_case

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Clicks the page's Next case button at an agreed wall-clock instant. Both browser contexts run
# on this machine's clock, so the two POSTs leave within a millisecond or so of each other,
# which two Playwright clicks issued one after the other would not.
CLICK_AT = """(at) => setTimeout(
  () => document.querySelector('button[data-key="n"]').click(), Math.max(0, at - Date.now()))"""


def test_two_reviewers_race_for_the_last_open_case(signed_in, alice, bob, agent, refunds):
    last = make_case(agent=agent, queue=refunds, summary="The only case left")
    pages = {"alice": signed_in("alice"), "bob": signed_in("bob")}
    for page in pages.values():
        expect(page.get_by_role("button", name="Next case")).to_be_visible()

    at = int(time.time() * 1000) + 500
    with (
        pages["alice"].expect_navigation() as alice_went,
        pages["bob"].expect_navigation() as bob_went,
    ):
        for page in pages.values():
            page.evaluate(CLICK_AT, at)
    assert alice_went.value.ok and bob_went.value.ok

    on_case = {name for name, page in pages.items() if CASE_URL.search(page.url)}
    on_inbox = {name for name, page in pages.items() if INBOX_URL.search(page.url)}
    assert len(on_case) == 1, {name: page.url for name, page in pages.items()}
    assert len(on_inbox) == 1, {name: page.url for name, page in pages.items()}
    (winner,) = on_case
    (loser,) = on_inbox

    expect(pages[winner].get_by_role("heading", level=1)).to_have_text("The only case left")
    expect(pages[winner].get_by_role("button", name="Approve")).to_be_visible()
    expect(pages[loser].locator("#messages")).to_contain_text(
        "There is no open case in your queues right now."
    )

    held = fresh(last)
    assert held.status == Status.CLAIMED
    assert held.claimed_by.username == winner
    assert Escalation.objects.filter(status=Status.CLAIMED).count() == 1
