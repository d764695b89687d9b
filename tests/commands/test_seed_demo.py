"""seed_demo: idempotent demo data, and a fresh working key on every run."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.test import RequestFactory

from accounts.models import Membership, Role
from escalation import audit, demo, routing
from escalation.models import Agent, AgentKey, Escalation, Queue, Status

pytestmark = pytest.mark.django_db

User = get_user_model()


def _counts() -> tuple[int, ...]:
    return (
        User.objects.count(),
        Membership.objects.count(),
        Queue.objects.count(),
        Agent.objects.count(),
        Escalation.objects.count(),
    )


def test_seed_demo_creates_queues_people_agent_and_a_dozen_open_cases(run):
    out = run("seed_demo")

    refunds, support = Queue.objects.get(slug="refunds"), Queue.objects.get(slug="support")
    assert refunds.team.slug == support.team.slug == "ops"
    assert refunds.label_schema["properties"]["category"]["enum"][0] == "fraud"
    assert refunds.routing_rules and support.routing_rules
    assert {m.user.username: m.role for m in Membership.objects.select_related("user")} == {
        "reviewer": Role.REVIEWER,
        "reviewer2": Role.REVIEWER,
        "manager": Role.MANAGER,
    }
    assert User.objects.get(username="admin").is_superuser
    agent = Agent.objects.get(name="demo-agent")
    assert agent.all_queues and agent.callback_url == ""
    cases = Escalation.objects.filter(agent=agent)
    assert cases.count() == len(demo.CASES) >= 12
    assert set(cases.values_list("status", flat=True)) == {Status.OPEN}
    assert set(cases.values_list("queue__slug", flat=True)) == {"refunds", "support"}
    assert len(set(cases.values_list("reason", flat=True))) >= 4
    assert "12 demo cases created" in out
    assert audit.verify_chain().ok


def test_seed_demo_prints_logins_that_work(run):
    out = run("seed_demo")

    for user in demo.USERS:
        assert user["username"] in out and user["password"] in out
        assert len(user["password"]) >= 8
        # The login throttle (django-axes) needs the request, as the login form passes it.
        request = RequestFactory().post("/accounts/login/")
        login = {"username": user["username"], "password": user["password"]}
        assert authenticate(request, **login) is not None
    assert "/inbox/" in out


def test_seed_demo_twice_changes_nothing_but_adds_a_second_valid_key(run):
    first = run("seed_demo").splitlines()[-1]
    counts = _counts()

    out = run("seed_demo")
    second = out.splitlines()[-1]

    assert _counts() == counts
    assert "demo-agent already has cases; none added" in out
    assert first != second
    assert AgentKey.authenticate(first).agent.name == "demo-agent"
    assert AgentKey.authenticate(second).agent.name == "demo-agent"
    assert AgentKey.objects.count() == 2


def test_seed_demo_keeps_an_operators_changes_to_a_demo_queue(run):
    run("seed_demo")
    Queue.objects.filter(slug="refunds").update(lease_seconds=60)

    run("seed_demo")

    assert Queue.objects.get(slug="refunds").lease_seconds == 60


def test_demo_cases_route_to_mixed_priorities_not_all_urgent():
    rules = {q["slug"]: q["routing_rules"] for q in demo.QUEUES}
    routed = []
    for case in demo.CASES:
        view = {"priority": case["priority"], "metadata": case["metadata"]}
        changes, _ = routing.evaluate(rules[case["queue"]], view)
        routed.append(changes.get("priority", case["priority"]))

    assert routed.count("urgent") <= 2
    assert {"urgent", "high", "normal", "low"} <= set(routed)


def test_demo_cases_carry_rich_context():
    for case in demo.CASES:
        assert case["context"]["conversation"][0]["role"] == "customer"
        assert case["proposed_action"]["type"]
        assert {"tier", "account_value"} <= set(case["metadata"])
        assert len(case["summary"]) <= 200 and 0 <= case["confidence"] <= 1
