"""create_agent: an agent, the queues it may post to, and its webhook secret shown once."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from escalation.models import Agent

pytestmark = pytest.mark.django_db


def test_create_agent_without_queues_may_post_everywhere_and_prints_its_secret(
    run, refunds, compliance
):
    out = run("create_agent", name="refund-bot", callback_url="https://agent.example.com/hook")

    agent = Agent.objects.get(name="refund-bot")
    assert agent.all_queues and agent.is_active
    assert agent.callback_url == "https://agent.example.com/hook"
    assert set(agent.allowed_queues()) == {refunds, compliance}
    assert agent.webhook_secret.startswith("whsec_")
    assert f"webhook signing secret (shown once): {agent.webhook_secret}" in out
    assert "agent refund-bot: may post to every queue" in out


def test_create_agent_with_queues_may_post_only_to_those(run, refunds, support, compliance):
    out = run("create_agent", name="refund-bot", queues="refunds, support")

    agent = Agent.objects.get(name="refund-bot")
    assert not agent.all_queues
    assert set(agent.allowed_queues()) == {refunds, support}
    assert agent.callback_url == ""
    assert "may post to refunds, support; callback (none)" in out


def test_create_agent_refuses_an_unknown_queue_naming_it(run, refunds):
    with pytest.raises(CommandError, match="unknown queue: nope"):
        run("create_agent", name="refund-bot", queues="refunds,nope")
    assert not Agent.objects.exists()


def test_create_agent_refuses_an_empty_queue_list(run):
    with pytest.raises(CommandError, match="--queues names no queue"):
        run("create_agent", name="refund-bot", queues=" , ")


@pytest.mark.parametrize(
    "url", ["ftp://agent.example.com/hook", "not a url", "javascript:alert(1)", "http://"]
)
def test_create_agent_refuses_a_callback_url_that_is_not_http(run, url):
    with pytest.raises(CommandError, match="must be an http\\(s\\) URL"):
        run("create_agent", name="refund-bot", callback_url=url)
    assert not Agent.objects.exists()


def test_create_agent_refuses_an_existing_name(run, agent):
    with pytest.raises(CommandError, match="agent refund-bot already exists"):
        run("create_agent", name="refund-bot")
    assert Agent.objects.count() == 1


def test_create_agent_refuses_a_name_that_is_not_a_slug(run):
    with pytest.raises(CommandError, match="^name: "):
        run("create_agent", name="refund bot")
    assert not Agent.objects.exists()
