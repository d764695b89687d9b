"""Every manager page in a real browser: a manager opens each one (with resolved cases behind
the charts, a dead delivery and an autonomous scope with QA samples), a screenshot of each lands in
test-artifacts/manager-<page>.png, and no page logs a console error or a CSP violation; a
reviewer of the same team gets 403 on each."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from escalation import autonomy, rollups, transitions
from escalation.audit import Actor
from escalation.models import Decision, Delivery, DeliveryStatus
from tests.api.test_decisions import certify_cells
from tests.browser.helpers import ConsoleWatch, screenshot, sign_in
from tests.factories import make_case
from tests.web.test_manage_autonomy import qa_sample

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# (confidence, decision, reviewer): a mix the calibration table and the charts can show.
OUTCOMES = [
    (0.95, Decision.APPROVE, "alice"),
    (0.92, Decision.APPROVE, "bob"),
    (0.88, Decision.APPROVE, "alice"),
    (0.81, Decision.MODIFY, "bob"),
    (0.74, Decision.APPROVE, "alice"),
    (0.66, Decision.REJECT, "alice"),
    (0.55, Decision.MODIFY, "bob"),
    (0.43, Decision.APPROVE, "bob"),
    (0.31, Decision.REJECT, "alice"),
    (0.12, Decision.REJECT, "bob"),
]


def manager_pages(scope=None) -> dict[str, tuple[str, str]]:
    """{name: (path, heading)}; the SLA dashboard only once its route exists, and a scope's
    page when given one."""
    pages = {
        "audit": ("/manage/audit/", "Audit log"),
        "reviewers": ("/manage/reviewers/", "Reviewers"),
        "agents": ("/manage/agents/", "Agents"),
        "calibration": ("/manage/agents/refund-bot/calibration", "Calibration of refund-bot"),
        "deliveries": ("/manage/deliveries/", "Webhook deliveries"),
        "exports": ("/manage/exports/", "Label exports"),
    }
    with contextlib.suppress(NoReverseMatch):
        pages["sla"] = (reverse("manage-sla"), "")
    if scope is not None:
        path = f"/manage/agents/{scope.agent.name}/scopes/{scope.pk}/"
        pages["scope"] = (path, f"Autonomy of {scope.agent.name} v1 in Refunds")
    return pages


@pytest.fixture
def history(agent, refunds, support, alice, bob):
    """Ten cases created over the last ten days and resolved by alice and bob, one of them
    with a dead webhook delivery."""
    people = {"alice": alice, "bob": bob}
    now = timezone.now()
    cases = []
    for i, (confidence, decision, who) in enumerate(OUTCOMES):
        actor = Actor.for_user(people[who])
        at = now - timedelta(days=i, hours=2)
        case = make_case(
            agent=agent,
            queue=refunds if i % 2 else support,
            confidence=confidence,
            summary=f"Refund case {i}",
            now=at,
        )
        held = transitions.claim(actor=actor, case_id=case.pk, now=at + timedelta(minutes=1))
        transitions.resolve(
            actor=actor,
            case_id=case.pk,
            claim_token=held.claim_token,
            decision=decision,
            final_action={"type": "refund", "amount": 10} if decision == Decision.MODIFY else None,
            now=at + timedelta(minutes=2 + i),
        )
        cases.append(case)
    Delivery.objects.create(
        webhook_id="msg_manager_pages_dead",
        escalation=cases[0],
        agent=agent,
        event_type="escalation.resolved",
        url="https://agent.example.com/hooks",
        body="{}",
        status=DeliveryStatus.DEAD,
        attempts=8,
        last_status_code=503,
        last_error="HTTP 503 after 8 attempts",
        dead_at=now,
    )
    make_case(agent=agent, queue=refunds, confidence=0.5, summary="Still open")
    rollups.refresh()  # as the periodic fold does
    return cases


@pytest.fixture
def scope(agent, refunds, alice, mona):
    """refund-bot v1 in refunds, autonomous, with three QA samples judged (one wrong)."""
    now = timezone.now()
    found = autonomy.scope_for(agent, "v1", refunds, now - timedelta(days=20))
    certify_cells(agent, refunds)
    autonomy.promote(actor=Actor.for_user(mona), scope_id=found.pk, now=now - timedelta(days=15))
    found.refresh_from_db()
    for days, decision in ((5, "approve"), (3, "approve"), (1, "reject")):
        qa_sample(found, alice, decision, judged_at=now - timedelta(days=days))
    return found


def test_manager_opens_every_manager_page(
    page: Page, console: ConsoleWatch, mona, history, scope
) -> None:
    sign_in(page, "mona")
    for name, (path, heading) in manager_pages(scope).items():
        response = page.goto(path)
        assert response is not None and response.status == 200, (name, response)
        if heading:
            expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        page.wait_for_load_state("networkidle")
        screenshot(page, f"manager-{name}.png")
    # The statistics pages draw their figures as inline SVG.
    for name in ("reviewers", "agents", "calibration", "sla", "scope"):
        page.goto(manager_pages(scope)[name][0])
        assert page.locator("svg").count() > 0, name
        if name not in ("calibration", "scope"):  # these read no day rollup
            expect(page.get_by_text("Figures as of")).to_be_visible()
    page.goto("/manage/deliveries/")
    expect(page.get_by_text("HTTP 503 after 8 attempts")).to_be_visible()
    assert console.errors == []
    assert console.csp_violations == []


def test_reviewer_gets_403_on_every_manager_page(page: Page, alice, mona, history, scope) -> None:
    sign_in(page, "alice")
    for name, (path, _) in manager_pages(scope).items():
        response = page.goto(path)
        assert response is not None and response.status == 403, (name, response.status)
