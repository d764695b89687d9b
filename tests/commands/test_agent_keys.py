"""create_agent_key and revoke_agent_key: keys shown once, audited, revoked by prefix."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from escalation import audit
from escalation.models import AgentKey, AuditEvent

pytestmark = pytest.mark.django_db


def test_create_agent_key_prints_a_working_key_alone_on_the_last_line(run, agent):
    out = run("create_agent_key", agent="refund-bot")

    raw = out.splitlines()[-1]
    key = AgentKey.authenticate(raw)
    assert key is not None and key.agent == agent
    assert raw.startswith(key.prefix + "_")
    assert f"key {key.prefix} for agent refund-bot" in out.splitlines()[0]
    event = AuditEvent.objects.get()
    assert event.verb == "agent.key_created" and event.actor_name == "system"
    assert event.data == {"agent": "refund-bot", "agent_id": agent.pk, "prefix": key.prefix}
    assert raw not in str(event.data)
    assert audit.verify_chain().ok


def test_create_agent_key_twice_gives_two_valid_keys(run, agent):
    first = run("create_agent_key", agent="refund-bot").splitlines()[-1]
    second = run("create_agent_key", agent="refund-bot").splitlines()[-1]

    assert first != second
    assert AgentKey.authenticate(first) and AgentKey.authenticate(second)


def test_create_agent_key_refuses_an_unknown_agent(run):
    with pytest.raises(CommandError, match="no agent named ghost"):
        run("create_agent_key", agent="ghost")
    assert not AgentKey.objects.exists()
    assert not AuditEvent.objects.exists()


def test_create_agent_key_refuses_a_deactivated_agent(run, agent):
    agent.is_active = False
    agent.save()

    with pytest.raises(CommandError, match="agent refund-bot is inactive"):
        run("create_agent_key", agent="refund-bot")
    assert not AgentKey.objects.exists()


def test_revoke_agent_key_by_prefix_stops_the_key_and_audits_it(run, agent):
    raw = run("create_agent_key", agent="refund-bot").splitlines()[-1]
    prefix = raw[:12]

    out = run("revoke_agent_key", prefix=prefix)

    assert out.strip() == f"revoked key {prefix} of agent refund-bot"
    assert AgentKey.authenticate(raw) is None
    assert AgentKey.objects.get(prefix=prefix).revoked_at is not None
    event = AuditEvent.objects.order_by("seq").last()
    assert event.verb == "agent.key_revoked"
    assert event.data == {"agent": "refund-bot", "agent_id": agent.pk, "prefix": prefix}
    assert audit.verify_chain().ok


def test_revoke_agent_key_leaves_the_agents_other_keys_working(run, agent):
    first = run("create_agent_key", agent="refund-bot").splitlines()[-1]
    second = run("create_agent_key", agent="refund-bot").splitlines()[-1]

    run("revoke_agent_key", prefix=first[:12])

    assert AgentKey.authenticate(first) is None
    assert AgentKey.authenticate(second) is not None


def test_revoke_agent_key_refuses_an_already_revoked_key(run, agent):
    prefix = run("create_agent_key", agent="refund-bot").splitlines()[-1][:12]
    run("revoke_agent_key", prefix=prefix)
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match=f"key {prefix} was already revoked"):
        run("revoke_agent_key", prefix=prefix)
    assert AuditEvent.objects.count() == events


def test_revoke_agent_key_refuses_an_unknown_prefix(run):
    with pytest.raises(CommandError, match="no key with prefix hnd_AAAAAAAA"):
        run("revoke_agent_key", prefix="hnd_AAAAAAAA")
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("prefix", ["hnd_AAA", "hnd_AAAAAAAA_secretpart"])
def test_revoke_agent_key_refuses_anything_but_the_12_character_prefix(run, prefix):
    with pytest.raises(CommandError, match="first 12 characters"):
        run("revoke_agent_key", prefix=prefix)
