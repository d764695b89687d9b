"""Fixtures of the reviewer UI tests: the fixed cast from tests/conftest.py, plus a reviewer of
another team (lena, team legal only), a manager of another team (lars, team legal only) and
cases in the states the pages show differently."""

from __future__ import annotations

import pytest

from accounts.models import Role
from escalation import transitions
from tests.factories import UserFactory, add_member, make_case

LABEL_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {
            "type": "string",
            "enum": ["goodwill", "error", "fraud"],
            "title": "Refund category",
        },
        "refund_ok": {"type": "boolean", "title": "Refund is justified"},
        "amount": {"type": "number", "minimum": 0, "maximum": 5000, "title": "Amount refunded"},
        "tags": {
            "type": "array",
            "items": {"type": "string", "enum": ["vip", "repeat", "chargeback"]},
            "title": "Case tags",
        },
    },
    "required": ["category"],
}


@pytest.fixture
def lena(legal):
    """A reviewer of team legal only: she must not reach ops cases by id."""
    user = UserFactory(username="lena")
    add_member(user, legal, Role.REVIEWER)
    return user


@pytest.fixture
def lars(legal, compliance):
    """A manager of team legal only: ops pages about one object are 404 to him."""
    user = UserFactory(username="lars")
    add_member(user, legal, Role.MANAGER)
    return user


@pytest.fixture
def claimed(case, as_alice):
    """`case`, claimed by alice; the returned case carries her claim token."""
    return transitions.claim(actor=as_alice, case_id=case.pk)


@pytest.fixture
def compliance_case(agent, compliance):
    return make_case(agent=agent, queue=compliance, summary="Sanctions list hit on a payout")


@pytest.fixture
def labelled_refunds(refunds):
    refunds.label_schema = LABEL_SCHEMA
    refunds.save(update_fields=["label_schema"])
    return refunds
