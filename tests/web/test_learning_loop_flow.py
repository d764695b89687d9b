"""The learning loop end to end through the web pages people use: an autonomous agent gets
`auto`, its QA sample is judged wrong on the case page, and its next call gets `review`; a
shadow case is decided blind, then its proposal is shown for the verdict."""

from __future__ import annotations

import pytest
from django.test import Client

from escalation import autonomy
from escalation.audit import Actor
from escalation.models import CalibrationCell, Escalation, Mode, Resolution, Scope
from tests.api.helpers import API, client_for, post_json
from tests.api.test_decisions import body, certify_cells, key_drawn

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(agent, refunds):
    return client_for(agent)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def claim(client: Client, case: Escalation) -> str:
    response = client.post(f"/cases/{case.pk}/claim/")
    assert response.status_code == 302
    case.refresh_from_db()
    return str(case.claim_token)


def test_an_autonomous_agent_loses_autonomy_when_its_qa_sample_is_judged_wrong(
    api, agent, refunds, alice, mona
):
    post_json(api, f"{API}/decisions", body())
    scope = Scope.objects.get(agent=agent, queue=refunds)
    certify_cells(agent, refunds)
    cert = autonomy.promote(actor=Actor.for_user(mona), scope_id=scope.pk)
    key = key_drawn(autonomy.qa_rate(scope, cert.created_at), drawn=True)
    first = post_json(api, f"{API}/decisions", body(confidence=0.97), **{"Idempotency-Key": key})
    assert first.status_code == 200
    assert first.json()["route"] == "auto" and first.json()["qa_sample"] is True
    qa = Escalation.objects.get(pk=first.json()["case"]["id"])

    reviewer = signed_in(alice)
    token = claim(reviewer, qa)
    page = reviewer.get(f"/cases/{qa.pk}/").content.decode()
    assert "QA sample" in page and "Show the agent's action" in page
    assert "Critical" in page
    # Blind: the action shows only inside the closed <details>, not in the editor.
    revealed = page.split('<details class="revealed-action">')[1].split("</details>")[0]
    assert "amount" in revealed
    editor = page.split('name="final_action"')[1].split("</textarea>")[0]
    assert "amount" not in editor and "Proposed action" not in page
    response = reviewer.post(
        f"/cases/{qa.pk}/decide/",
        {"claim_token": token, "decision": "reject", "final_action": "", "note": "wrong refund"},
    )
    assert response.status_code == 302
    assert Resolution.objects.get(escalation=qa).decision == "reject"
    scope.refresh_from_db()
    assert scope.mode == Mode.ASSISTED and scope.epoch == 1

    again = post_json(api, f"{API}/decisions", body(confidence=0.97))
    assert again.status_code == 201
    assert again.json()["route"] == "review" and again.json()["mode"] == "assisted"

    # The manager sees it with its evidence: the mode, the fall-back and why, the QA outcome.
    manager = signed_in(mona)
    agents = manager.get("/manage/agents/").content.decode()
    assert "Fell back: 28-day window test" in agents and "Assisted" in agents
    detail = manager.get(f"/manage/agents/{agent.name}/scopes/{scope.pk}/").content.decode()
    assert "Mode history" in detail and "1 of 1 QA samples wrong in 28 days" in detail


def test_a_shadow_case_is_decided_blind_then_judged(api, agent, refunds, alice, mona):
    post_json(api, f"{API}/decisions", body())
    scope = Scope.objects.get(agent=agent, queue=refunds)
    autonomy.set_mode(actor=Actor.for_user(mona), scope_id=scope.pk, mode=Mode.SHADOW)
    answer = post_json(api, f"{API}/decisions", body(confidence=0.8)).json()
    case = Escalation.objects.get(pk=answer["case"]["id"])

    reviewer = signed_in(alice)
    token = claim(reviewer, case)
    page = reviewer.get(f"/cases/{case.pk}/").content.decode()
    assert "Shadow review" in page and "Proposed action" not in page
    assert 'value="approve"' not in page  # nothing to approve when the proposal is hidden
    assert "amount" not in page
    response = reviewer.post(
        f"/cases/{case.pk}/decide/",
        {
            "claim_token": token,
            "decision": "modify",
            "final_action": '{"type": "refund", "amount": 25}',
            "note": "",
        },
    )
    assert response.status_code == 302 and response["Location"] == f"/cases/{case.pk}/"
    page = reviewer.get(f"/cases/{case.pk}/").content.decode()
    assert "Was the agent's proposal acceptable?" in page
    assert "Proposed action" in page  # shown now
    assert not CalibrationCell.objects.exists()
    response = reviewer.post(f"/cases/{case.pk}/verdict/", {"verdict": "modify"})
    assert response.status_code == 302
    cell = CalibrationCell.objects.get()
    assert (cell.source, cell.n, cell.modified) == ("shadow", 1, 1)
    # Once only; a reviewer who did not decide it cannot give it either.
    response = reviewer.post(f"/cases/{case.pk}/verdict/", {"verdict": "approve"}, follow=True)
    assert "already recorded" in response.content.decode()
    assert CalibrationCell.objects.get().n == 1


def test_the_verdict_needs_a_login_post_and_a_case_one_may_see(client, case, alice, outsider):
    assert client.post(f"/cases/{case.pk}/verdict/", {"verdict": "approve"}).status_code == 302
    client.force_login(alice)
    assert client.get(f"/cases/{case.pk}/verdict/").status_code == 405
    refused = client.post(f"/cases/{case.pk}/verdict/", {"verdict": "approve"}, follow=True)
    assert "only a decided shadow case takes a verdict" in refused.content.decode()
    client.force_login(outsider)
    assert client.post(f"/cases/{case.pk}/verdict/", {"verdict": "approve"}).status_code == 404
