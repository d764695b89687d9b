"""Agents (the programs that escalate), their API keys, and idempotency records."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import string
from datetime import timedelta

from django.db import connection, models
from django.utils import timezone

from escalation import rows
from escalation.ssrf import validate_callback_url

KEY_PREFIX = "hnd_"
KEY_PUBLIC_CHARS = 8
VISIBLE_PREFIX_LENGTH = len(KEY_PREFIX) + KEY_PUBLIC_CHARS  # "hnd_" + 8 = 12
_ALPHABET = string.ascii_letters + string.digits


def new_webhook_secret() -> str:
    # Standard Webhooks secrets are "whsec_" + base64 of the raw key bytes.
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def digest_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class Agent(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    callback_url = models.URLField(max_length=2000, blank=True, validators=[validate_callback_url])
    webhook_secret = models.CharField(max_length=100, default=new_webhook_secret)
    # After a rotation the old secret keeps signing beside the new one until this time.
    previous_webhook_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    all_queues = models.BooleanField(
        default=False, help_text="May post to every queue, including ones created later."
    )
    queues = models.ManyToManyField("escalation.Queue", blank=True, related_name="agents")
    rate_per_second = models.FloatField(default=50.0)
    rate_burst = models.PositiveIntegerField(default=100)
    max_open_cases = models.PositiveIntegerField(default=10_000)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def allowed_queues(self) -> models.QuerySet:
        return _allowed_queues(self.pk if not self.all_queues else None)

    def allowed_queue(self, slug: str):
        """allowed_queues()'s queue of this slug, or None (compiled once: every create asks)."""
        from escalation.models.queues import Queue

        found = _allowed_queue_of_all(slug) if self.all_queues else _listed_queue(self.pk, slug)
        return rows.instance(Queue, found[0]) if found else None

    def may_post_to(self, queue) -> bool:
        return self.allowed_queues().filter(pk=queue.pk).exists()


class CapShare(models.Model):
    """One of an agent's CAP_SHARES shares of its open-case cap (transitions.Intake).

    `bound` is never less than the open and claimed cases created through this share since the
    agent's cases were last counted, and a create takes room in a share only up to the cap's
    share (max_open_cases // CAP_SHARES): so the cap holds without a count, and creates
    of one agent that take different shares do not wait for each other. A close leaves the
    bounds as they are; when a create finds no room, it locks the agent and every share,
    counts, and spreads the count over the shares again.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="cap_shares")
    share = models.PositiveSmallIntegerField()
    bound = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "share"], name="cap_share_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}/{self.share}: {self.bound}"


class AgentKey(models.Model):
    """An API key: shown once at creation, stored as a SHA-256 digest (keys carry 190+ bits of
    entropy, so a slow password hash would only cost every request), found by its prefix."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="keys")
    prefix = models.CharField(max_length=VISIBLE_PREFIX_LENGTH, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.agent})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def generate(cls, agent: Agent) -> tuple[AgentKey, str]:
        """Create a key; returns the row and the raw key, which is never available again."""
        while True:
            public = "".join(secrets.choice(_ALPHABET) for _ in range(KEY_PUBLIC_CHARS))
            prefix = KEY_PREFIX + public
            if not cls.objects.filter(prefix=prefix).exists():
                break
        raw = f"{prefix}_{secrets.token_urlsafe(32)}"  # 43 secret characters
        key = cls.objects.create(agent=agent, prefix=prefix, digest=digest_key(raw))
        return key, raw

    @classmethod
    def authenticate(cls, raw_key: str) -> AgentKey | None:
        """The active key (of an active agent) that `raw_key` is, or None."""
        if not raw_key.startswith(KEY_PREFIX) or len(raw_key) < VISIBLE_PREFIX_LENGTH + 33:
            return None
        # Plain SQL (escalation.rows): every API request starts here.
        found = rows.fetch(
            _key_sql(connection.vendor), [raw_key[:VISIBLE_PREFIX_LENGTH]], cls, Agent
        )
        if found is None:
            return None
        key, key.agent = found
        if not key.agent.is_active:
            return None
        if not hmac.compare_digest(key.digest, digest_key(raw_key)):
            return None
        return key

    def revoke(self) -> bool:
        """Revoke once; False if it already was."""
        return bool(
            AgentKey.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
        )


IDEMPOTENCY_TTL = timedelta(hours=24)


class IdempotencyRecord(models.Model):
    """The stored 2xx answer to one (agent, Idempotency-Key), replayed for 24 h."""

    # No index of its own: the unique (agent, key) index serves lookups by agent (migration
    # 0018 says why a second one hurt).
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "key"], name="idempotency_unique_agent_key")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]


@functools.cache
def _key_sql(vendor: str) -> str:
    """AgentKey.authenticate's read: the unrevoked key of a prefix, with its agent."""
    return (
        f"SELECT {rows.columns(AgentKey, 'k')}, {rows.columns(Agent, 'a')}"  # noqa: S608
        f" FROM {rows.table(AgentKey)} k JOIN {rows.table(Agent)} a ON a.id = k.agent_id"
        " WHERE k.prefix = %s AND k.revoked_at IS NULL"
    )


def _allowed_queues(listed_for: int | None) -> models.QuerySet:
    """The active queues; only those listed for the agent `listed_for` unless it is None (an
    agent of all queues)."""
    from escalation.models.queues import Queue

    queues = Queue.objects.filter(is_active=True)
    if listed_for is None:
        return queues
    listed = Agent.queues.through.objects.filter(agent_id=listed_for).values("queue_id")
    return queues.filter(pk__in=listed)


def _queue_columns(queues: models.QuerySet) -> models.QuerySet:
    return queues.values_list(*(f.attname for f in queues.model._meta.concrete_fields))[:1]


@rows.compiled
def _allowed_queue_of_all(slug: str) -> models.QuerySet:
    return _queue_columns(_allowed_queues(None).filter(slug=slug))


@rows.compiled
def _listed_queue(agent_id: int, slug: str) -> models.QuerySet:
    return _queue_columns(_allowed_queues(agent_id).filter(slug=slug))
