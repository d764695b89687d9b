"""The learning loop in the manager console: the Autonomy table on /manage/agents/, one scope's
page (error budget against a hand-computed case, the CUSUM trace, certificate, evidence,
history), Promote / Shadow / Assisted / Kill switch through the domain, and who may do any
of it (reviewers 403, another team's manager 404, wrong method 405, anonymous to sign-in)."""

from __future__ import annotations

import html as html_lib
import math
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from escalation import autonomy, autonomy_math, autonomy_queries, charts, rollups
from escalation.audit import Actor
from escalation.models import (
    AuditEvent,
    LabelSource,
    Mode,
    ModeChange,
    PolicyDecision,
    Resolution,
    Scope,
)
from tests.api.test_decisions import certify_cells
from tests.factories import make_case
from tests.web.helpers import buttons, flashed, shown_messages, text

pytestmark = pytest.mark.django_db

AGENTS = "/manage/agents/"


def scope_url(scope: Scope, tail: str = "") -> str:
    return f"/manage/agents/{scope.agent.name}/scopes/{scope.pk}/{tail}"


def plain(fragment: str) -> str:
    """The text a person reads: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def section(response, element_id: str) -> str:
    page = text(response)
    return page.split(f'id="{element_id}">', 1)[1].split("</section>", 1)[0]


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def scope(agent, refunds, now):
    """refund-bot v1 in refunds, assisted (as every new scope starts)."""
    return autonomy.scope_for(agent, "v1", refunds, now - timedelta(days=50))


@pytest.fixture
def autonomous(scope, agent, refunds, mona, now):
    """The scope promoted 45 days ago on 149 clean assisted labels."""
    certify_cells(agent, refunds)
    autonomy.promote(actor=Actor.for_user(mona), scope_id=scope.pk, now=now - timedelta(days=45))
    scope.refresh_from_db()
    return scope


def auto_decisions(scope, count: int, *, at) -> None:
    """`count` autonomous actions at `at`, none of them drawn for QA."""
    PolicyDecision.objects.bulk_create(
        PolicyDecision(
            scope=scope,
            created_at=at,
            route=PolicyDecision.Route.AUTO,
            mode=Mode.AUTONOMOUS,
            confidence=0.97,
            certificate=scope.certificate,
        )
        for _ in range(count)
    )


def qa_sample(scope, reviewer, decision: str, *, judged_at) -> None:
    """An autonomous action drawn for QA an hour before `judged_at`, judged `decision`.

    The resolution is written directly: resolving through transitions would (rightly) fall
    the scope back on one wrong sample out of two at α = 2%, and the page must show the
    budget of a scope that is still autonomous."""
    asked = judged_at - timedelta(hours=1)
    case = make_case(
        agent=scope.agent, queue=scope.queue, now=asked, label_source=LabelSource.QA, scope=scope
    )
    PolicyDecision.objects.create(
        scope=scope,
        created_at=asked,
        route=PolicyDecision.Route.AUTO,
        mode=Mode.AUTONOMOUS,
        confidence=0.97,
        qa_sample=True,
        qa_rate=0.4,
        certificate=scope.certificate,
        case=case,
    )
    Resolution.objects.create(
        escalation=case, decision=decision, resolved_by=reviewer, resolved_at=judged_at
    )


@pytest.fixture
def budget_case(autonomous, alice, now):
    """10 autonomous actions in the last 28 days, 2 of them QA samples (one approved, one
    rejected), and one older QA sample (approved, 30 days ago: in the CUSUM, not the budget)."""
    qa_sample(autonomous, alice, "approve", judged_at=now - timedelta(days=30))
    auto_decisions(autonomous, 8, at=now - timedelta(days=3))
    qa_sample(autonomous, alice, "approve", judged_at=now - timedelta(days=2))
    qa_sample(autonomous, alice, "reject", judged_at=now - timedelta(days=1))
    return autonomous


# --- the Autonomy table -------------------------------------------------------------------------


def autonomy_rows(response) -> list[str]:
    return re.findall(r'<tr class="scope-row">(.*?)</tr>', text(response), re.S)


def row_buttons(row: str) -> list[str]:
    return [plain(b) for b in re.findall(r"<button\b[^>]*>(.*?)</button>", row, re.S)]


def test_the_agents_page_shows_each_scope_of_the_managers_queues(
    budget_case, agent, support, compliance, mona, now
):
    rollups.rebuild()  # the QA cases list refund-bot among the agents, as the fold would
    assisted = autonomy.scope_for(agent, "v2", support, now)
    autonomy.scope_for(agent, "v1", compliance, now)  # team legal's: not shown to mona

    response = signed_in(mona).get(AGENTS)

    assert response.status_code == 200
    rows = autonomy_rows(response)
    assert len(rows) == 2  # by queue: refunds (v1), then support (v2)
    first, second = plain(rows[0]), plain(rows[1])
    # version, queue, mode, θ, health, π, CUSUM, 28-day volume, last change, actions
    assert first.startswith("v1 Refunds Autonomous 0.95 Green 40.0% 0 10 Promoted")
    assert first.endswith("by mona Shadow Kill switch")
    assert row_buttons(rows[0]) == ["Shadow", "Kill switch"]
    assert row_buttons(rows[1]) == ["Promote", "Shadow"]
    assert second.startswith("v2 Support Assisted — Green — 0 0 none Promote Shadow")
    assert f'href="{scope_url(budget_case)}"' in rows[0]
    assert f'href="{scope_url(assisted)}"' in rows[1]
    assert autonomy.qa_rate(budget_case, now) == pytest.approx(0.40)
    assert autonomy.autonomous_volume(budget_case, now) == 10
    page = plain(text(response))
    assert "computed from unbiased labels only — shadow verdicts, assisted decisions" in page
    assert "never from the cases the agent chose to escalate" in page
    assert "Escalated cases are all there is" not in page


def test_each_action_is_a_csrf_protected_post_back_to_the_page(scope, mona):
    response = signed_in(mona).get(AGENTS + "?days=7")

    row = autonomy_rows(response)[0]
    forms = re.findall(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', row, re.S)
    assert [action for action, _ in forms] == [
        scope_url(scope, "promote"),
        scope_url(scope, "mode"),
    ]
    for _, body in forms:
        assert 'name="csrfmiddlewaretoken"' in body
        assert 'name="next" value="/manage/agents/?days=7"' in body
    assert 'name="mode" value="shadow"' in forms[1][1]


def test_a_scope_with_only_escalated_labels_says_that_is_all_there_is(other_agent, refunds, mona):
    # other-bot has no case counted by the day rollups yet: its scopes still show.
    biased = autonomy.scope_for(other_agent, "v1", refunds, timezone.now())
    certify_cells(other_agent, refunds, source=LabelSource.ESCALATED, n=500)
    assert autonomy.biased_only(biased)

    response = signed_in(mona).get(AGENTS)

    rows = autonomy_rows(response)
    assert len(rows) == 1 and "<h2>other-bot</h2>" in text(response)
    assert "Escalated cases are all there is" in plain(rows[0])
    page = signed_in(mona).get(scope_url(biased))
    assert "Escalated cases are all there is" in plain(text(page))


def test_the_biased_only_flag_agrees_with_the_domain(agent, other_agent, refunds, support, now):
    mixed = autonomy.scope_for(agent, "v1", refunds, now)
    certify_cells(agent, refunds, source=LabelSource.ESCALATED, n=10)
    certify_cells(agent, refunds, source=LabelSource.SHADOW, n=3)
    escalated = autonomy.scope_for(other_agent, "v1", support, now)
    certify_cells(other_agent, support, source=LabelSource.ESCALATED, n=10)
    empty = autonomy.scope_for(agent, "v9", support, now)

    table = autonomy_queries.scope_table([refunds.pk, support.pk], now)

    flags = {row["scope"].pk: row["biased_only"] for row in table}
    assert flags == {s.pk: autonomy.biased_only(s) for s in (mixed, escalated, empty)}
    assert flags == {mixed.pk: False, escalated.pk: True, empty.pk: False}


# --- the scope page -------------------------------------------------------------------------


def test_the_error_budget_matches_the_hand_computed_case(budget_case, mona):
    response = signed_in(mona).get(scope_url(budget_case))

    assert response.status_code == 200
    # α = 2%, δ = 5%, N = 10 actions, 1 of 2 QA samples wrong in 28 days:
    # budget = 0.02 × 10 = 0.2 errors; error rate 1/2; estimated errors 10 × 1/2 = 5;
    # Clopper-Pearson with n = 2, k = 1: lower L solves 1 - (1 - L)^2 = δ, L = 1 - √0.95;
    # upper U solves 1 - U^2 = δ, U = √0.95; burn rate = 0.5 / 0.02 = 25.
    low, high = 10 * (1 - math.sqrt(0.95)), 10 * math.sqrt(0.95)
    figures = autonomy_math.budget(10, 2, 1, 0.02, 0.05)
    assert figures["budget"] == pytest.approx(0.2)
    assert figures["estimated_errors_low"] == pytest.approx(low)
    assert figures["estimated_errors_high"] == pytest.approx(high)
    assert figures["burn_rate"] == pytest.approx(25)
    shown = plain(section(response, "budget"))
    assert "Budget 0.20 errors allowed: α × 10 autonomous actions" in shown
    assert "QA samples 2 judged, 1 wrong" in shown
    assert "Observed error rate 50.0%" in shown
    assert (f"{low:.2f}", f"{high:.2f}") == ("0.25", "9.75")
    assert "Estimated errors 5.00 (one-sided 95.0% Clopper–Pearson bounds 0.25 – 9.75)" in shown
    assert "Burn rate 25.00" in shown
    assert 'class="overrun"' in section(response, "budget")


def test_the_cusum_trace_runs_over_every_qa_outcome_of_the_certificate(budget_case, mona):
    response = signed_in(mona).get(scope_url(budget_case))

    # w = 35, h = 140 at α = 2%: right, right, wrong gives C = 0, 0, 0 + 35 - 1 = 34.
    assert autonomy_math.cusum_constants(0.02) == (35, 140)
    assert autonomy_math.cusum_trace([0, 0, 1], 0.02) == [0.0, 0.0, 34.0]
    cusum = section(response, "cusum")
    samples = re.findall(
        r"<tr><td>(\d+)</td>.*?<td>(right|<span[^>]*>wrong</span>)</td><td>([\d.]+)</td></tr>",
        cusum,
        re.S,
    )
    assert [(n, plain(outcome), c) for n, outcome, c in samples] == [
        ("3", "wrong", "34"),
        ("2", "right", "0"),
        ("1", "right", "0"),
    ]
    chart = re.search(r"<svg.*?</svg>", cusum, re.S).group(0)
    assert "CUSUM C 3: 34" in chart and "h = 140" in chart
    points = re.search(r'<polyline points="([^"]+)"', chart).group(1).split()
    assert len(points) == 3 and points[0].split(",")[1] == points[1].split(",")[1]
    assert "1 of 3 QA samples judged wrong" in plain(cusum)


def test_the_scope_page_shows_the_certificate_evidence_and_history(autonomous, mona):
    cert = autonomous.certificate
    autonomy.set_mode(actor=Actor.for_user(mona), scope_id=autonomous.pk, mode="assisted")
    autonomous.refresh_from_db()
    certify_cells(autonomous.agent, autonomous.queue, epoch=1, n=100)  # 49 short of n_min

    response = signed_in(mona).get(scope_url(autonomous))

    assert response.status_code == 200
    assert (
        plain(section(response, "certificate"))
        == "Current certificate None: the scope is not autonomous."
    )
    evidence = plain(section(response, "evidence"))
    assert "100 unbiased labels of epoch 1" in evidence
    assert "not certified : needs 49 more error-free cases" in evidence
    history = plain(section(response, "history"))
    assert "Kill switch Autonomous Assisted by a manager mona" in history
    assert "Promoted Assisted Autonomous θ = 0.95 on 149 labels, 0 errors mona" in history
    assert history.index("Kill switch") < history.index("Promoted")  # newest first
    assert cert.pk is not None and "No QA sample judged" in plain(section(response, "cusum"))
    assert {"Promote", "Shadow"} <= set(buttons(response)) and "Kill switch" not in buttons(
        response
    )


def test_an_autonomous_scope_page_shows_its_certificate(autonomous, mona):
    response = signed_in(mona).get(scope_url(autonomous))

    shown = plain(section(response, "certificate"))
    assert "θ = 0.95" in shown
    assert "n = 149 labels, k = 0 errors" in shown
    assert f"coverage {autonomous.certificate.coverage * 100:.1f}%" in shown
    assert f"upper bound of the error rate {autonomous.certificate.upper_bound:.6f}" in shown
    evidence = plain(section(response, "evidence"))
    assert "Certified now: θ = 0.95 (n = 149, k = 0" in evidence
    assert {"Shadow", "Kill switch"} <= set(buttons(response))
    assert "Promote" not in buttons(response)


# --- the actions ----------------------------------------------------------------------------


def test_promote_makes_a_certifiable_scope_autonomous(scope, agent, refunds, mona):
    certify_cells(agent, refunds)
    client = signed_in(mona)

    response = client.post(scope_url(scope, "promote"), {"next": AGENTS + "?days=7"})

    assert response.status_code == 302 and response.url == AGENTS + "?days=7"
    scope.refresh_from_db()
    assert scope.mode == Mode.AUTONOMOUS and scope.theta == pytest.approx(0.95)
    change = ModeChange.objects.get(scope=scope)
    assert (change.reason, change.actor_name) == ("promoted", "mona")
    assert AuditEvent.objects.filter(verb="autonomy.promoted").count() == 1
    assert flashed(response) == [
        "refund-bot v1 in Refunds now acts alone at confidence ≥ θ = 0.95 "
        "(certified on 149 unbiased labels, 0 errors)."
    ]


def test_promote_on_too_little_evidence_is_refused_with_the_reason(scope, agent, refunds, mona):
    certify_cells(agent, refunds, n=148)
    client = signed_in(mona)

    response = client.post(scope_url(scope, "promote"), follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(scope_url(scope), 302)]
    [message] = shown_messages(response)
    assert message.startswith("refund-bot v1 in Refunds: not certified: the unbiased labels")
    scope.refresh_from_db()
    assert scope.mode == Mode.ASSISTED and not ModeChange.objects.exists()
    assert not AuditEvent.objects.filter(verb__startswith="autonomy.").exists()


def test_the_kill_switch_returns_an_autonomous_scope_to_assisted(autonomous, mona):
    epoch = autonomous.epoch

    response = signed_in(mona).post(scope_url(autonomous, "mode"), {"mode": "assisted"})

    assert response.status_code == 302 and response.url == scope_url(autonomous)
    autonomous.refresh_from_db()
    assert autonomous.mode == Mode.ASSISTED and autonomous.epoch == epoch + 1
    assert autonomous.theta is None and autonomous.certificate is None
    change = ModeChange.objects.filter(scope=autonomous).last()
    assert (change.reason, change.from_mode, change.to_mode, change.actor_name) == (
        "fell_back.kill_switch",
        Mode.AUTONOMOUS,
        Mode.ASSISTED,
        "mona",
    )
    assert AuditEvent.objects.filter(verb="autonomy.fell_back.kill_switch").count() == 1
    assert flashed(response)[0].startswith("Kill switch: refund-bot v1 in Refunds no longer acts")


def test_shadow_mode_from_assisted(scope, mona):
    response = signed_in(mona).post(scope_url(scope, "mode"), {"mode": "shadow"})

    assert response.status_code == 302
    scope.refresh_from_db()
    assert scope.mode == Mode.SHADOW and scope.epoch == 0
    assert ModeChange.objects.get(scope=scope).reason == "mode_set"
    assert flashed(response) == ["refund-bot v1 in Refunds is shadow now."]


def test_a_mode_other_than_shadow_or_assisted_is_refused(scope, mona):
    response = signed_in(mona).post(scope_url(scope, "mode"), {"mode": "autonomous"}, follow=True)

    assert shown_messages(response) == [
        "refund-bot v1 in Refunds: a scope becomes autonomous only by promotion"
    ]
    scope.refresh_from_db()
    assert scope.mode == Mode.ASSISTED and not ModeChange.objects.exists()


@pytest.mark.parametrize(
    "target", ["https://evil.example/x", "//evil.example/x", "/\\evil.example", "javascript:x", ""]
)
def test_next_must_be_a_path_of_this_site(scope, mona, target):
    response = signed_in(mona).post(scope_url(scope, "mode"), {"mode": "shadow", "next": target})

    assert response.status_code == 302 and response.url == scope_url(scope)


# --- who may ----------------------------------------------------------------------------------


def every_request(scope):
    """(method, path) of every new page and action about `scope`."""
    return [
        ("get", scope_url(scope)),
        ("post", scope_url(scope, "promote")),
        ("post", scope_url(scope, "mode")),
    ]


def assert_untouched(scope):
    scope.refresh_from_db()
    assert scope.mode == Mode.ASSISTED and not ModeChange.objects.exists()


@pytest.mark.parametrize(
    ("who", "status"),
    [("alice", 403), ("lars", 404)],
    ids=["a reviewer gets 403", "another team's manager gets 404"],
)
def test_only_a_manager_of_the_scopes_queue_reaches_it(request, scope, who, status):
    client = signed_in(request.getfixturevalue(who))
    for method, path in every_request(scope):
        response = getattr(client, method)(path, {"mode": "shadow"})
        assert response.status_code == status, (method, path)
    assert_untouched(scope)


def test_a_scope_under_another_agents_name_is_404(scope, other_agent, mona):
    response = signed_in(mona).get(f"/manage/agents/{other_agent.name}/scopes/{scope.pk}/")

    assert response.status_code == 404


def test_the_wrong_method_is_405(scope, mona):
    client = signed_in(mona)

    assert client.post(scope_url(scope)).status_code == 405
    assert client.get(scope_url(scope, "promote")).status_code == 405
    assert client.get(scope_url(scope, "mode")).status_code == 405
    assert_untouched(scope)


def test_anonymous_people_are_sent_to_sign_in(client, scope):
    for method, path in every_request(scope):
        response = getattr(client, method)(path, {"mode": "shadow"})
        assert response.status_code == 302
        assert response.url.startswith("/accounts/login/?next=")
    assert_untouched(scope)


# --- agent-supplied text ----------------------------------------------------------------------


def test_an_agent_version_is_escaped_everywhere_it_is_shown(agent, refunds, mona):
    hostile = autonomy.scope_for(agent, "<script>x</script>", refunds, timezone.now())
    client = signed_in(mona)

    pages = [client.get(AGENTS), client.get(scope_url(hostile))]
    pages.append(client.post(scope_url(hostile, "promote"), follow=True))

    for response in pages:
        assert response.status_code == 200
        assert "<script>x</script>" not in text(response)
        assert "&lt;script&gt;x&lt;/script&gt;" in text(response)


def test_the_line_chart_escapes_its_text():
    chart = charts.line_chart(
        [("<b>C</b>", [0, 34], charts.BAR)], "<i>title</i>", threshold=140, threshold_label="<h>"
    )

    assert "<b>" not in chart and "<i>" not in chart and "<h>" not in chart
    assert "&lt;b&gt;C&lt;/b&gt;" in chart and "&lt;h&gt;" in chart
