"""The fixed cast: team ops (reviewers alice and bob, manager mona) owning queues refunds and
support; team legal owning queue compliance; an outsider in no team; two agents."""

from __future__ import annotations

import pytest

from accounts.models import Role
from escalation import outbox
from escalation.audit import Actor
from tests.factories import (
    AgentFactory,
    QueueFactory,
    TeamFactory,
    UserFactory,
    add_member,
    make_case,
)


@pytest.fixture(autouse=True)
def _eager_outbox(settings):
    # After-commit outbox sends run in-process unless a test starts a real worker; tests that
    # need the broker override this.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    yield
    # What a test that needed the broker left to the doorbell goes now, not into the next test.
    outbox.doorbell.flush()


@pytest.fixture(autouse=True)
def _audit_sealed_per_statement(request):
    """A test inside pytest-django's transaction never commits, so on PostgreSQL the audit
    chain's commit-time seal (migration 0015) would never run: there it seals at the end of
    each statement instead. Tests with real transactions (transaction=True, live servers)
    seal at commit, as production does."""
    names = request.fixturenames
    if "transactional_db" in names or "live_server" in names:
        return
    if "db" in names:
        request.getfixturevalue("db")
    elif request.node.get_closest_marker("django_db") is None:
        return
    from django.db import connection

    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS escalation_audit_seal IMMEDIATE")


@pytest.fixture
def ops(db):
    return TeamFactory(slug="ops", name="Operations")


@pytest.fixture
def legal(db):
    return TeamFactory(slug="legal", name="Legal")


@pytest.fixture
def refunds(ops):
    return QueueFactory(slug="refunds", name="Refunds", team=ops)


@pytest.fixture
def support(ops):
    return QueueFactory(slug="support", name="Support", team=ops)


@pytest.fixture
def compliance(legal):
    return QueueFactory(slug="compliance", name="Compliance", team=legal)


@pytest.fixture
def alice(ops):
    user = UserFactory(username="alice")
    add_member(user, ops, Role.REVIEWER)
    return user


@pytest.fixture
def bob(ops):
    user = UserFactory(username="bob")
    add_member(user, ops, Role.REVIEWER)
    return user


@pytest.fixture
def mona(ops):
    user = UserFactory(username="mona")
    add_member(user, ops, Role.MANAGER)
    return user


@pytest.fixture
def outsider(db):
    return UserFactory(username="olga")


@pytest.fixture
def agent(db):
    return AgentFactory(name="refund-bot")


@pytest.fixture
def other_agent(db):
    return AgentFactory(name="other-bot")


@pytest.fixture
def as_alice(alice):
    return Actor.for_user(alice)


@pytest.fixture
def as_bob(bob):
    return Actor.for_user(bob)


@pytest.fixture
def as_mona(mona):
    return Actor.for_user(mona)


@pytest.fixture
def as_agent(agent):
    return Actor.for_agent(agent)


@pytest.fixture
def case(agent, refunds):
    return make_case(agent=agent, queue=refunds)
