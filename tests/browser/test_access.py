"""A reviewer of another team cannot open, list or claim an ops case."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Role
from escalation.models import Status
from tests.browser.helpers import INBOX_URL, fresh, sign_in
from tests.factories import UserFactory, add_member, make_case

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lena(legal, compliance):
    """A reviewer in team legal only."""
    user = UserFactory(username="lena")
    add_member(user, legal, Role.REVIEWER)
    return user


def test_reviewer_of_another_team_gets_404_for_an_ops_case(page: Page, lena, agent, refunds):
    case = make_case(agent=agent, queue=refunds, summary="Ops-only refund case")
    sign_in(page, "lena")
    expect(page.locator("tr.case-row")).to_have_count(0)
    expect(page.get_by_text("Ops-only refund case")).to_have_count(0)

    response = page.goto(f"/cases/{case.pk}/")
    assert response is not None and response.status == 404
    expect(page.get_by_text("Ops-only refund case")).to_have_count(0)

    page.goto("/inbox/")
    page.get_by_role("button", name="Next case").click()
    expect(page).to_have_url(INBOX_URL)
    expect(page.locator("#messages")).to_contain_text("There is no open case in your queues")
    assert fresh(case).status == Status.OPEN
