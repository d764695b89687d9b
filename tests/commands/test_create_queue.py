"""create_queue: a queue with its SLA policy, lease, expiry, label schema and routing rules."""

from __future__ import annotations

import json

import pytest
from django.core.management.base import CommandError

from accounts.models import Team
from escalation import sla
from escalation.models import Queue

pytestmark = pytest.mark.django_db

SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": ["fraud", "goodwill"]}},
}
RULES = [
    {"when": {"field": "metadata.tier", "op": "eq", "value": "gold"}, "then": {"priority": "high"}}
]


def test_create_queue_with_defaults_belongs_to_team_ops(run):
    out = run("create_queue", slug="refunds", name="Refunds")

    queue = Queue.objects.get(slug="refunds")
    assert queue.name == "Refunds"
    assert queue.team == Team.objects.get(slug="ops")
    assert queue.sla_policy == sla.DEFAULT_POLICY
    assert queue.lease_seconds == 15 * 60
    assert queue.expire_after_seconds == 7 * 86400
    assert out.strip() == (
        "queue refunds (team ops): urgent 5m/30m, high 15m/2h, normal 1h/8h, low 4h/1d; "
        "lease 15m, expires after 7d; 0 label fields, 0 routing rules (created)"
    )


def test_create_queue_sets_named_sla_targets_and_keeps_the_others(run):
    out = run(
        "create_queue",
        "--slug",
        "vip",
        "--name",
        "VIP",
        "--team",
        "legal",
        "--sla",
        "urgent=2m/20m",
        "low=1d/3d",
        "--lease",
        "5m",
        "--expire-after",
        "2d",
    )

    queue = Queue.objects.get(slug="vip")
    assert queue.team.slug == "legal"
    assert queue.sla_policy["urgent"] == {"claim": 120, "resolve": 1200}
    assert queue.sla_policy["low"] == {"claim": 86400, "resolve": 3 * 86400}
    assert queue.sla_policy["high"] == sla.DEFAULT_POLICY["high"]
    assert (queue.lease_seconds, queue.expire_after_seconds) == (300, 2 * 86400)
    assert "urgent 2m/20m, high 15m/2h, normal 1h/8h, low 1d/3d; lease 5m, expires after 2d" in out


def test_create_queue_accepts_sla_repeated(run):
    run(
        "create_queue",
        "--slug",
        "vip",
        "--name",
        "VIP",
        "--sla",
        "urgent=2m/20m",
        "--sla",
        "high=10m/1h",
    )

    policy = Queue.objects.get(slug="vip").sla_policy
    assert policy["urgent"]["claim"] == 120 and policy["high"]["resolve"] == 3600


def test_create_queue_stores_label_schema_and_routing_rules(run):
    out = run(
        "create_queue",
        slug="refunds",
        name="Refunds",
        label_schema=json.dumps(SCHEMA),
        routing_rules=json.dumps(RULES),
    )

    queue = Queue.objects.get(slug="refunds")
    assert queue.label_schema == SCHEMA
    assert queue.routing_rules == RULES
    assert "1 label fields, 1 routing rules" in out


def test_create_queue_again_updates_only_the_given_fields(run, refunds):
    run("create_queue", "--slug", "refunds", "--sla", "normal=30m/4h")
    out = run("create_queue", "--slug", "refunds", "--lease", "20m")

    queue = Queue.objects.get(slug="refunds")
    assert Queue.objects.count() == 1
    assert queue.name == "Refunds" and queue.team.slug == "ops"
    assert queue.sla_policy["normal"] == {"claim": 1800, "resolve": 4 * 3600}
    assert queue.lease_seconds == 1200
    assert out.strip().endswith("(updated)")


def test_create_queue_can_move_a_queue_to_another_team(run, refunds):
    run("create_queue", slug="refunds", team="legal")

    assert Queue.objects.get(slug="refunds").team.slug == "legal"


def test_create_queue_needs_a_name_for_a_new_queue(run):
    with pytest.raises(CommandError, match="--name is required"):
        run("create_queue", slug="refunds")
    assert not Queue.objects.exists()


@pytest.mark.parametrize(
    ("sla_arg", "message"),
    [
        ("urgent", "expected PRIORITY=CLAIM/RESOLVE"),
        ("urgent=5m", "expected PRIORITY=CLAIM/RESOLVE"),
        ("asap=5m/30m", "unknown priority"),
        ("urgent=5x/30m", "not a duration"),
        ("urgent=0m/30m", "must be positive"),
        ("urgent=1h/30m", "claim .* exceeds resolve"),
    ],
)
def test_create_queue_refuses_a_bad_sla_target(run, sla_arg, message):
    with pytest.raises(CommandError, match=message):
        run("create_queue", "--slug", "refunds", "--name", "Refunds", "--sla", sla_arg)
    assert not Queue.objects.exists()
    assert not Team.objects.exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("lease", "soon", "--lease: not a duration"),
        ("lease", "5s", "lease_seconds: a lease must last at least 10 seconds"),
        ("expire_after", "-1d", "--expire-after: not a duration"),
        ("expire_after", "5s", "expire_after_seconds: the expiry horizon must be at least"),
    ],
)
def test_create_queue_refuses_a_bad_lease_or_expiry(run, option, value, message):
    with pytest.raises(CommandError, match=message):
        run("create_queue", slug="refunds", name="Refunds", **{option: value})
    assert not Queue.objects.exists()


def test_create_queue_refuses_invalid_json(run):
    with pytest.raises(CommandError, match="--label-schema: not valid JSON"):
        run("create_queue", slug="refunds", name="Refunds", label_schema="{type: object")


def test_create_queue_refuses_a_label_schema_outside_the_subset(run):
    schema = {"type": "object", "properties": {"colour": {"type": "object"}}}
    with pytest.raises(CommandError, match="^label_schema: .*colour"):
        run("create_queue", slug="refunds", name="Refunds", label_schema=json.dumps(schema))
    assert not Queue.objects.exists()


def test_create_queue_refuses_bad_routing_rules(run):
    rules = [{"when": {"field": "metadata.tier", "op": "like", "value": "g"}, "then": {}}]
    with pytest.raises(CommandError, match=r"^routing_rules: rules\[0\]"):
        run("create_queue", slug="refunds", name="Refunds", routing_rules=json.dumps(rules))


def test_create_queue_refuses_a_bad_slug_or_team(run):
    with pytest.raises(CommandError, match="^slug: "):
        run("create_queue", slug="re funds", name="Refunds")
    with pytest.raises(CommandError, match="is not a slug"):
        run("create_queue", slug="refunds", name="Refunds", team="o p s")
    assert not Queue.objects.exists()
