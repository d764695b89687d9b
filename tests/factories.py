"""factory_boy factories for the fixed cast and their data. Cases go through transitions.create
so every case in a test has its audit event and outbox row, as in production."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from accounts.models import Membership, Role, Team
from escalation import transitions
from escalation.audit import Actor
from escalation.models import Agent, Queue

PASSWORD = "correct-horse-battery"


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"team{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def add_member(user, team, role: str = Role.REVIEWER) -> Membership:
    return Membership.objects.get_or_create(user=user, team=team, defaults={"role": role})[0]


class QueueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Queue
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"queue{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    team = factory.SubFactory(TeamFactory)


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"agent{n}")
    all_queues = True


def make_case(*, agent, queue, **fields):
    values = {
        "summary": "Refund of 1,240 EUR exceeds the auto-approve limit",
        "confidence": 0.42,
        "context": {"conversation": [{"role": "customer", "text": "Where is my refund?"}]},
        "proposed_action": {"type": "refund", "amount": 1240, "currency": "EUR"},
    }
    values.update(fields)
    return transitions.create(actor=Actor.for_agent(agent), agent=agent, queue=queue, **values)
