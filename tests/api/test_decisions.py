"""POST /api/v1/decisions and the learning loop behind it (escalation.autonomy): review in
shadow and assisted mode, auto at or above a certified θ in autonomous mode with QA draws,
promotion only on unbiased labels of the current epoch, and the fall-backs (window test,
CUSUM, critical, kill switch) that send the next call to review again."""

from __future__ import annotations

import pytest
from django.core import mail

from escalation import autonomy, autonomy_math, calibration, transitions
from escalation.audit import Actor
from escalation.models import (
    AuditEvent,
    CalibrationCell,
    Escalation,
    LabelSource,
    Mode,
    ModeChange,
    PolicyDecision,
    Scope,
)
from escalation.models.autonomy import Health
from escalation.transitions import TransitionError
from tests.api.helpers import API, assert_error, post_json, resolve_case

pytestmark = pytest.mark.django_db

DECISIONS = f"{API}/decisions"


def body(confidence=0.97, version="v1", **extra):
    return {
        "queue": "refunds",
        "summary": "Refund of 40 EUR",
        "confidence": confidence,
        "context": {"order": "A-1"},
        "proposed_action": {"type": "refund", "amount": 40},
        "agent_version": version,
        **extra,
    }


def scope_of(agent, refunds, version="v1"):
    return Scope.objects.get(agent=agent, agent_version=version, queue=refunds)


def certify_cells(agent, refunds, *, version="v1", source="assisted", epoch=0, n=149):
    """n error-free labels at confidence 0.95 in one cell: the smallest set that certifies
    at α = 2%, δ = 5% (n_min = 149)."""
    CalibrationCell.objects.create(
        agent=agent,
        agent_version=version,
        queue=refunds,
        source=source,
        epoch=epoch,
        g=calibration.grid_index(0.95),
        n=n,
        approved=n,
        sum_c=0.95 * n,
        sum_c2=0.95 * 0.95 * n,
        sum_c_approved=0.95 * n,
        min_c=0.95,
    )


def autonomous(api, agent, refunds, mona):
    """The scope v1 of refund-bot in refunds, promoted on 149 clean assisted labels."""
    post_json(api, DECISIONS, body())
    certify_cells(agent, refunds)
    return autonomy.promote(actor=Actor.for_user(mona), scope_id=scope_of(agent, refunds).pk)


def key_drawn(rate: float, drawn: bool, prefix: str = "decision") -> str:
    """An Idempotency-Key whose QA draw at `rate` comes out as `drawn`."""
    for i in range(1000):
        key = f"{prefix}-{i}"
        if autonomy_math.qa_draw(autonomy.qa_secret(), key, rate) == drawn:
            return key
    raise AssertionError("no such key")


# --- review in shadow and assisted mode --------------------------------------------------------


def test_a_new_scope_is_assisted_and_every_case_goes_to_review(api, agent, refunds):
    response = post_json(api, DECISIONS, body(confidence=0.99))
    assert response.status_code == 201
    answer = response.json()
    assert answer["route"] == "review" and answer["mode"] == "assisted"
    assert answer["certificate"] is None and answer["qa_sample"] is False
    case = Escalation.objects.get(pk=answer["case"]["id"])
    assert answer["case"]["status"] == "open" and case.queue == refunds
    assert case.label_source == LabelSource.ASSISTED and case.scope == scope_of(agent, refunds)
    made = AuditEvent.objects.get(verb="policy.decided")
    assert made.escalation_id == case.pk and made.data["route"] == "review"


def test_shadow_mode_hides_the_proposal_and_the_verdict_is_the_label(
    api, agent, refunds, alice, mona
):
    post_json(api, DECISIONS, body())
    autonomy.set_mode(
        actor=Actor.for_user(mona), scope_id=scope_of(agent, refunds).pk, mode="shadow"
    )
    answer = post_json(api, DECISIONS, body(confidence=0.9)).json()
    assert answer["route"] == "review" and answer["mode"] == "shadow"
    case = Escalation.objects.get(pk=answer["case"]["id"])
    assert case.label_source == LabelSource.SHADOW
    actor = Actor.for_user(alice)
    token = transitions.claim(actor=actor, case_id=case.pk).claim_token
    with pytest.raises(TransitionError) as refused:
        transitions.resolve(actor=actor, case_id=case.pk, claim_token=token, decision="approve")
    assert "hidden" in str(refused.value.fields["decision"])
    transitions.resolve(
        actor=actor,
        case_id=case.pk,
        claim_token=token,
        decision="modify",
        final_action={"type": "refund", "amount": 30},
    )
    assert not CalibrationCell.objects.exists()  # the label is the verdict, not yet given
    transitions.record_verdict(actor=Actor.for_user(alice), case_id=case.pk, verdict="approve")
    cell = CalibrationCell.objects.get()
    assert (cell.source, cell.n, cell.approved, cell.epoch) == ("shadow", 1, 1, 0)
    with pytest.raises(TransitionError):  # once
        transitions.record_verdict(actor=Actor.for_user(alice), case_id=case.pk, verdict="reject")


def test_a_case_posted_straight_to_escalations_is_an_escalated_label(api, agent, refunds, alice):
    created = post_json(api, f"{API}/escalations", body()).json()
    case = Escalation.objects.get(pk=created["id"])
    assert case.label_source == LabelSource.ESCALATED and case.scope is None
    resolve_case(case, alice)
    assert CalibrationCell.objects.get().source == "escalated"


# --- promotion ---------------------------------------------------------------------------------


def test_promotion_needs_a_certificate(api, agent, refunds, mona):
    post_json(api, DECISIONS, body())
    scope = scope_of(agent, refunds)
    certify_cells(agent, refunds, n=148)  # one short of n_min
    with pytest.raises(TransitionError) as refused:
        autonomy.promote(actor=Actor.for_user(mona), scope_id=scope.pk)
    assert refused.value.code == "not_certified"
    scope.refresh_from_db()
    assert scope.mode == Mode.ASSISTED and not ModeChange.objects.exists()


def test_escalated_labels_never_certify(api, agent, refunds, mona):
    post_json(api, DECISIONS, body())
    scope = scope_of(agent, refunds)
    certify_cells(agent, refunds, source="escalated", n=500)
    assert autonomy.biased_only(scope)
    with pytest.raises(TransitionError):
        autonomy.promote(actor=Actor.for_user(mona), scope_id=scope.pk)


def test_promoted_scope_answers_auto_above_theta_and_review_below(api, agent, refunds, mona):
    cert = autonomous(api, agent, refunds, mona)
    assert cert.theta == pytest.approx(0.95) and (cert.n, cert.k) == (149, 0)
    rate = autonomy.qa_rate(scope_of(agent, refunds), cert.created_at)
    assert rate == pytest.approx(0.40)  # a new scope: E floored at 1,000
    key = key_drawn(rate, drawn=False)
    response = post_json(api, DECISIONS, body(confidence=0.97), **{"Idempotency-Key": key})
    assert response.status_code == 200
    assert response.json() == {
        "route": "auto",
        "case": None,
        "qa_sample": False,
        "mode": "autonomous",
        "certificate": cert.pk,
    }
    below = post_json(api, DECISIONS, body(confidence=0.9))
    assert below.status_code == 201 and below.json()["route"] == "review"
    case = Escalation.objects.get(pk=below.json()["case"]["id"])
    assert case.label_source == LabelSource.ESCALATED  # chosen by the threshold: biased
    event = AuditEvent.objects.filter(verb="policy.decided", escalation=None).get()
    assert event.data["certificate"] == cert.pk and event.data["route"] == "auto"
    assert AuditEvent.objects.filter(verb="autonomy.promoted").count() == 1


def test_a_retried_auto_gets_the_same_answer_and_draw(api, agent, refunds, mona):
    cert = autonomous(api, agent, refunds, mona)
    key = key_drawn(autonomy.qa_rate(scope_of(agent, refunds), cert.created_at), drawn=True)
    first = post_json(api, DECISIONS, body(), **{"Idempotency-Key": key})
    again = post_json(api, DECISIONS, body(), **{"Idempotency-Key": key})
    assert first.status_code == 200 and first.json()["qa_sample"] is True
    qa_case = Escalation.objects.get(pk=first.json()["case"]["id"])
    assert qa_case.label_source == LabelSource.QA
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert PolicyDecision.objects.filter(route="auto").count() == 1


def test_a_new_agent_version_routes_to_review(api, agent, refunds, mona):
    autonomous(api, agent, refunds, mona)
    answer = post_json(api, DECISIONS, body(confidence=0.99, version="v2")).json()
    assert answer["route"] == "review" and answer["mode"] == "assisted"
    assert scope_of(agent, refunds, "v2").mode == Mode.ASSISTED


# --- fall-backs --------------------------------------------------------------------------------


def qa_case(api, agent, refunds):
    """A fresh autonomous decision drawn for QA, and its case."""
    scope = scope_of(agent, refunds)
    made = PolicyDecision.objects.filter(scope=scope).count()
    key = key_drawn(autonomy.qa_rate(scope, scope.updated_at), drawn=True, prefix=f"qa-{made}")
    answer = post_json(api, DECISIONS, body(), **{"Idempotency-Key": key}).json()
    assert answer["qa_sample"] is True
    return Escalation.objects.get(pk=answer["case"]["id"])


def test_a_wrong_qa_sample_falls_back_and_the_next_call_is_review(api, agent, refunds, alice, mona):
    autonomous(api, agent, refunds, mona)
    case = qa_case(api, agent, refunds)
    resolve_case(case, alice, decision="reject")
    scope = scope_of(agent, refunds)
    # One error in one sample: the 95% lower bound (0.05) is above α = 2%: red.
    assert scope.mode == Mode.ASSISTED and scope.epoch == 1 and scope.theta is None
    change = ModeChange.objects.filter(scope=scope).last()
    assert change.reason == "fell_back.window" and change.to_mode == Mode.ASSISTED
    assert AuditEvent.objects.filter(verb="autonomy.fell_back.window").count() == 1
    answer = post_json(api, DECISIONS, body(confidence=0.99)).json()
    assert answer["route"] == "review" and answer["mode"] == "assisted"


def test_a_demoted_scope_cannot_be_promoted_on_labels_older_than_the_demotion(
    api, agent, refunds, alice, mona
):
    autonomous(api, agent, refunds, mona)
    resolve_case(qa_case(api, agent, refunds), alice, decision="reject")
    scope = scope_of(agent, refunds)
    with pytest.raises(TransitionError) as refused:  # the 149 labels are of epoch 0
        autonomy.promote(actor=Actor.for_user(mona), scope_id=scope.pk)
    assert refused.value.code == "not_certified"
    certify_cells(agent, refunds, epoch=scope.epoch)  # fresh labels after the fall-back
    assert autonomy.promote(actor=Actor.for_user(mona), scope_id=scope.pk).epoch == 1


def test_a_critical_qa_finding_falls_back_at_once(api, agent, refunds, alice, mona):
    autonomous(api, agent, refunds, mona)
    # Approve (the action was right) but critical: autonomy is taken back all the same.
    resolve_case(qa_case(api, agent, refunds), alice, decision="approve", critical=True)
    scope = scope_of(agent, refunds)
    assert scope.mode == Mode.ASSISTED
    assert ModeChange.objects.filter(scope=scope).last().reason == "fell_back.critical"


def test_only_a_qa_case_can_be_marked_critical(api, agent, refunds, alice):
    answer = post_json(api, DECISIONS, body()).json()
    case = Escalation.objects.get(pk=answer["case"]["id"])
    with pytest.raises(TransitionError) as refused:
        resolve_case(case, alice, critical=True)
    assert "critical" in refused.value.fields


def test_the_cusum_fires_on_a_run_of_errors(monkeypatch, api, agent, refunds, alice, mona):
    # Keep the window test quiet to see the CUSUM alone: 4 errors leave C at 136 < 140,
    # the 5th brings it to 170.
    monkeypatch.setattr(autonomy_math, "window_state", lambda *a, **k: Health.GREEN)
    autonomous(api, agent, refunds, mona)
    for expected in (34, 68, 102, 136):
        resolve_case(qa_case(api, agent, refunds), alice, decision="modify")
        scope = scope_of(agent, refunds)
        assert scope.mode == Mode.AUTONOMOUS and scope.cusum == expected
    resolve_case(qa_case(api, agent, refunds), alice, decision="modify")
    scope = scope_of(agent, refunds)
    assert scope.mode == Mode.ASSISTED
    assert ModeChange.objects.filter(scope=scope).last().reason == "fell_back.cusum"


def test_the_kill_switch_and_managers_hear_of_every_change(
    api, agent, refunds, mona, django_capture_on_commit_callbacks
):
    mona.email = "mona@example.com"
    mona.save()
    with django_capture_on_commit_callbacks(execute=True):
        autonomous(api, agent, refunds, mona)
    scope = scope_of(agent, refunds)
    with django_capture_on_commit_callbacks(execute=True):
        autonomy.set_mode(actor=Actor.for_user(mona), scope_id=scope.pk, mode="assisted")
    scope.refresh_from_db()
    assert scope.mode == Mode.ASSISTED and scope.epoch == 1
    reasons = list(ModeChange.objects.filter(scope=scope).values_list("reason", flat=True))
    assert reasons == ["promoted", "fell_back.kill_switch"]
    subjects = [m.subject for m in mail.outbox]
    assert any("acts alone" in s for s in subjects) and any("fell back" in s for s in subjects)
    with pytest.raises(TransitionError):
        autonomy.set_mode(actor=Actor.for_user(mona), scope_id=scope.pk, mode="autonomous")


# --- the API's errors ----------------------------------------------------------------------------


def test_a_bad_body_is_the_create_endpoints_400(api):
    response = post_json(api, DECISIONS, {"queue": "refunds", "confidence": 2})
    assert_error(response, 400, "invalid")
    assert "summary" in response.json()["error"]["fields"]
    assert not PolicyDecision.objects.exists()


def test_a_queue_not_allowed_is_403(api, compliance, agent):
    agent.all_queues = False
    agent.save()
    agent.queues.set([])
    response = post_json(api, DECISIONS, body(queue="compliance"))
    assert_error(response, 403, "queue_not_allowed")


def test_no_key_is_401_and_get_is_405(api, client):
    assert client.post(DECISIONS, {}, content_type="application/json").status_code == 401
    assert api.get(DECISIONS).status_code == 405


def test_the_schema_documents_the_operation():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/decisions"]["post"]
    assert operation["operationId"] == "decide"
    assert {"200", "201", "400", "401", "403", "409", "422", "429"} <= set(operation["responses"])


def test_a_queue_that_allows_it_promotes_on_its_own(api, agent, refunds):
    from escalation import tasks

    post_json(api, DECISIONS, body())
    certify_cells(agent, refunds)
    assert tasks.sweep_autonomy() == 0  # the queue leaves promotion to a manager
    refunds.auto_promote = True
    refunds.save()
    assert tasks.sweep_autonomy() == 1
    scope = scope_of(agent, refunds)
    assert scope.mode == Mode.AUTONOMOUS and scope.certificate.theta == pytest.approx(0.95)
    assert ModeChange.objects.get(scope=scope).actor_name == "system"
    assert tasks.sweep_autonomy() == 0


@pytest.mark.parametrize(("field", "value"), [("autonomy_alpha", 0.6), ("autonomy_delta", 0.0)])
def test_a_queues_error_budget_is_checked_when_saved(refunds, field, value):
    from django.core.exceptions import ValidationError

    setattr(refunds, field, value)
    with pytest.raises(ValidationError) as refused:
        refunds.clean()
    assert field in refused.value.message_dict
