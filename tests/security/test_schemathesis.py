"""Schemathesis over the whole agent API schema (/api/v1/schema), in process through WSGI: for
every operation, schema-valid and schema-violating requests, each answered without a server
error, with a status, content type, headers and body that the schema itself documents, and
refused without the key (`ignored_auth`).

Two of schemathesis's default checks are left out on purpose: `negative_data_rejection` (the API
ignores unknown query parameters and empty optional ones, as HTTP APIs do) and
`positive_data_acceptance` (an opaque cursor or a callback URL that fails the SSRF rules is
schema-valid and still rightly refused). Both ask about strictness, not safety; the schema
inaccuracies they found were fixed (bounds of limit, alpha, delta, Idempotency-Key; object
bodies; date-time parameters).

Bounded: a few examples per operation, `wait` forced to 0 (a real wait is tested elsewhere).
"""

from __future__ import annotations

import os
import uuid

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

from escalation.models import AgentKey
from tests.factories import make_case

# The long-poll hands its connection back to the pool, which a test transaction cannot survive.
pytestmark = pytest.mark.django_db(transaction=True)

# Per operation; HANDOFF_FUZZ_EXAMPLES=500 for a deeper run by hand.
EXAMPLES = int(os.environ.get("HANDOFF_FUZZ_EXAMPLES", "25"))
LEFT_OUT = [
    schemathesis.checks.negative_data_rejection,
    schemathesis.checks.positive_data_acceptance,
]


@pytest.fixture
def api_schema(transactional_db):
    return schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", get_wsgi_application())


schema = schemathesis.pytest.from_fixture("api_schema")


def _aim_at_a_real_case(case, agent, refunds) -> None:
    """Half the well-formed case ids become a real case of this agent, so context, cancel,
    get and the long-poll are exercised past their 404."""
    case_id = (case.path_parameters or {}).get("id")
    try:
        parsed = uuid.UUID(str(case_id))
    except ValueError:
        return
    if parsed.int % 2 == 0:
        case.path_parameters["id"] = str(make_case(agent=agent, queue=refunds).pk)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case, tireless_agent, refunds):
    _, raw = AgentKey.generate(tireless_agent)
    if isinstance((case.query or {}).get("wait"), int):
        case.query["wait"] = 0
    _aim_at_a_real_case(case, tireless_agent, refunds)

    case.call_and_validate(headers={"Authorization": f"Bearer {raw}"}, excluded_checks=LEFT_OUT)
