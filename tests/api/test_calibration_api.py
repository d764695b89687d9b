"""GET /api/v1/calibration: this agent's calibration on its own resolved cases (bands, ECE,
Brier, certified threshold), per queue and agent version, computed from SQL aggregates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from escalation import rollups, transitions
from escalation.audit import Actor
from escalation.models import Escalation, Resolution, Status
from tests.api.helpers import API, assert_error, post_json, resolve_case
from tests.factories import make_case

pytestmark = pytest.mark.django_db

CALIBRATION = f"{API}/calibration"
NOTE = "escalated cases are the ones the agent chose to send, so these figures speak for those only"


def resolved(agent, queue, reviewer, confidence: float, decision: str = "approve", **fields):
    """One case made and resolved through the real transitions."""
    case = make_case(agent=agent, queue=queue, confidence=confidence, **fields)
    final_action = {"type": "refund", "amount": 10} if decision == "modify" else None
    return resolve_case(case, reviewer, decision=decision, final_action=final_action)


def bulk_resolved(agent, queue, reviewer, confidence: float, count: int, decision="approve"):
    """Many resolved cases at once (the hand vectors need 149 and more)."""
    now = timezone.now()
    cases = Escalation.objects.bulk_create(
        Escalation(
            agent=agent,
            queue=queue,
            summary="bulk",
            confidence=confidence,
            status=Status.RESOLVED,
            created_at=now,
            updated_at=now,
            entered_queue_at=now,
            expires_at=now + timedelta(days=1),
            closed_at=now,
        )
        for _ in range(count)
    )
    Resolution.objects.bulk_create(
        Resolution(escalation=case, decision=decision, resolved_by=reviewer, resolved_at=now)
        for case in cases
    )
    rollups.rebuild_calibration()  # rows written around resolve: recount as an operator would


@pytest.fixture
def hand_set(agent, refunds, alice):
    # The hand-computed set: band 9 has 0.95 approved and 0.95 rejected, band 8 one 0.85
    # approved, band 1 one 0.15 modified.
    resolved(agent, refunds, alice, 0.95, "approve")
    resolved(agent, refunds, alice, 0.95, "reject")
    resolved(agent, refunds, alice, 0.85, "approve")
    resolved(agent, refunds, alice, 0.15, "modify")


# --- the figures -----------------------------------------------------------------------------


def test_hand_computed_small_set(api, agent, hand_set):
    response = api.get(CALIBRATION)

    assert response.status_code == 200, response.content[:500]
    body = response.json()
    assert body["agent"] == "refund-bot"
    assert body["queue"] is None and body["agent_version"] is None
    assert (body["alpha"], body["delta"]) == (0.02, 0.05)
    assert body["note"] == NOTE
    assert body["total"] == 4

    bands = body["bands"]
    assert len(bands) == 10
    assert [b["n"] for b in bands] == [0, 1, 0, 0, 0, 0, 0, 0, 1, 2]
    top = bands[9]
    assert (top["lo"], top["hi"], top["label"]) == (0.9, 1.0, "0.9–1.0")
    assert (top["approved"], top["modified"], top["rejected"], top["errors"]) == (1, 0, 1, 1)
    assert (top["approved_share"], top["modified_share"], top["rejected_share"]) == (
        0.5,
        0.0,
        0.5,
    )
    assert (top["mean_confidence"], top["accuracy"], top["error_rate"]) == (0.95, 0.5, 0.5)
    assert (bands[8]["approved"], bands[8]["approved_share"], bands[8]["mean_confidence"]) == (
        1,
        1.0,
        0.85,
    )
    assert (bands[1]["modified"], bands[1]["modified_share"], bands[1]["error_rate"]) == (
        1,
        1.0,
        1.0,
    )
    assert bands[0]["approved_share"] is None and bands[0]["mean_confidence"] is None

    # Band 9: 2/4 |0.5 - 0.95| + band 8: 1/4 |1 - 0.85| + band 1: 1/4 |0 - 0.15|.
    assert body["ece"] == 0.3
    # (0.05^2 + 0.95^2 + 0.15^2 + 0.15^2) / 4
    assert body["brier"] == 0.2375
    assert [(p["band"], p["n"], p["accuracy"], p["gap"]) for p in body["reliability"]] == [
        (1, 1, 0.0, -0.15),
        (8, 1, 1.0, 0.15),
        (9, 2, 0.5, -0.45),
    ]

    cert = body["certificate"]
    assert cert["certified"] is False
    assert (cert["theta"], cert["theta_grid"], cert["threshold_t"]) == (None, None, None)
    assert (cert["alpha"], cert["delta"], cert["n_min"], cert["total"]) == (0.02, 0.05, 149, 4)
    assert cert["stopped_at"] is None  # no threshold reaches 149 cases: nothing was tested
    # Closest to certifying: t = 0.85 (3 cases, 1 error) needs 236 in all (the P(Bin(236,
    # 0.02) <= 1) = 0.049431 vector), so 233 more; t = 0.95 (2, 1) needs 234; t = 0.15 (4, 2)
    # more still.
    assert cert["best"]["t"] == 0.85
    assert (cert["n"], cert["k"], cert["coverage"], cert["needed_error_free"]) == (3, 1, 0.75, 233)
    assert cert["best"]["needed_error_free"] == 233
    # P(Bin(3, 0.02) <= 1) = 0.98^3 + 3 * 0.02 * 0.98^2
    assert cert["p_value"] == 0.998816


def test_149_error_free_cases_certify(api, agent, refunds, alice):
    bulk_resolved(agent, refunds, alice, 0.95, 149)

    cert = api.get(CALIBRATION).json()["certificate"]

    assert cert["certified"] is True
    assert (cert["theta"], cert["theta_grid"], cert["threshold_t"]) == (0.95, 0.95, 0.0)
    assert (cert["n"], cert["k"], cert["coverage"]) == (149, 0, 1.0)
    assert cert["upper_bound"] == 0.019905
    assert cert["needed_error_free"] is None and cert["best"] is None


def test_148_error_free_cases_need_one_more(api, agent, refunds, alice):
    bulk_resolved(agent, refunds, alice, 0.95, 148)

    cert = api.get(CALIBRATION).json()["certificate"]

    assert cert["certified"] is False
    assert cert["theta"] is None
    assert (cert["n"], cert["k"], cert["needed_error_free"]) == (148, 0, 1)
    assert cert["upper_bound"] == 0.020038
    assert (cert["best"]["t"], cert["best"]["upper_bound"]) == (0.95, 0.020038)


@pytest.mark.parametrize(
    ("approved", "decision", "certified", "p_value"),
    [(234, "reject", False, 0.050263), (235, "modify", True, 0.049431)],
)
def test_one_error_vectors(api, agent, refunds, alice, approved, decision, certified, p_value):
    bulk_resolved(agent, refunds, alice, 0.9, approved)
    bulk_resolved(agent, refunds, alice, 0.9, 1, decision)

    cert = api.get(CALIBRATION).json()["certificate"]

    assert cert["certified"] is certified
    assert (cert["n"], cert["k"], cert["p_value"]) == (approved + 1, 1, p_value)


def test_one_band_of_100_clean_cases_at_093_needs_49_more(api, agent, refunds, alice):
    bulk_resolved(agent, refunds, alice, 0.93, 100)

    cert = api.get(CALIBRATION).json()["certificate"]

    assert cert["certified"] is False
    assert (cert["best"]["t"], cert["needed_error_free"]) == (0.93, 49)


def test_alpha_and_delta_are_used_and_echoed(api, agent, refunds, alice):
    bulk_resolved(agent, refunds, alice, 0.95, 50)

    default = api.get(CALIBRATION).json()
    loose = api.get(CALIBRATION, {"alpha": "0.05", "delta": "0.1"}).json()

    assert default["certificate"]["certified"] is False
    assert (loose["alpha"], loose["delta"]) == (0.05, 0.1)
    cert = loose["certificate"]
    # ceil(ln 0.1 / ln 0.95) = 45 <= 50 clean cases.
    assert (cert["alpha"], cert["delta"], cert["n_min"]) == (0.05, 0.1, 45)
    assert cert["certified"] is True and cert["theta"] == 0.95


def test_empty_answers_zero_counts(api):
    body = api.get(CALIBRATION).json()

    assert body["total"] == 0
    assert body["ece"] is None and body["brier"] is None and body["reliability"] == []
    assert all(b["n"] == 0 for b in body["bands"])
    assert body["certificate"]["certified"] is False
    assert body["certificate"]["needed_error_free"] == 149
    assert body["note"] == NOTE


# --- whose cases -----------------------------------------------------------------------------


def test_only_resolved_cases_count(api, agent, refunds, alice, as_agent):
    make_case(agent=agent, queue=refunds, confidence=0.9)
    claimed = make_case(agent=agent, queue=refunds, confidence=0.9)
    transitions.claim(actor=Actor.for_user(alice), case_id=claimed.pk)
    cancelled = make_case(agent=agent, queue=refunds, confidence=0.9)
    transitions.cancel(actor=as_agent, case_id=cancelled.pk, reason="withdrawn")
    resolved(agent, refunds, alice, 0.3, "reject")

    body = api.get(CALIBRATION).json()

    assert body["total"] == 1
    assert body["bands"][3]["rejected"] == 1


def test_queue_filter(api, agent, refunds, support, alice):
    resolved(agent, refunds, alice, 0.95, "approve")
    resolved(agent, refunds, alice, 0.45, "reject")
    resolved(agent, support, alice, 0.75, "modify")

    everything = api.get(CALIBRATION).json()
    one_queue = api.get(CALIBRATION, {"queue": "support"}).json()

    assert everything["total"] == 3
    assert one_queue["queue"] == "support"
    assert one_queue["total"] == 1
    assert [b["n"] for b in one_queue["bands"]] == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert one_queue["bands"][7]["modified"] == 1
    assert one_queue["brier"] == 0.5625  # 0.75^2


def test_an_unknown_queue_counts_nothing(api, agent, refunds, alice):
    resolved(agent, refunds, alice, 0.95)

    response = api.get(CALIBRATION, {"queue": "no-such-queue"})

    assert response.status_code == 200
    body = response.json()
    assert (body["queue"], body["total"]) == ("no-such-queue", 0)


def test_agent_version_filter(api, agent, refunds, alice):
    resolved(agent, refunds, alice, 0.95, agent_version="v1")
    resolved(agent, refunds, alice, 0.35, "reject", agent_version="v2")
    resolved(agent, refunds, alice, 0.55, "modify", agent_version="v2")

    v2 = api.get(CALIBRATION, {"agent_version": "v2"}).json()

    assert (v2["agent_version"], v2["total"]) == ("v2", 2)
    assert [b["n"] for b in v2["bands"]] == [0, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    assert api.get(CALIBRATION, {"agent_version": "v3"}).json()["total"] == 0


def test_an_agent_never_sees_another_agents_cases(
    api, other_api, agent, other_agent, refunds, alice
):
    resolved(agent, refunds, alice, 0.95, "approve")
    resolved(other_agent, refunds, alice, 0.25, "reject")
    resolved(other_agent, refunds, alice, 0.25, "reject")
    bulk_resolved(other_agent, refunds, alice, 0.99, 200)

    mine = api.get(CALIBRATION).json()
    theirs = other_api.get(CALIBRATION).json()
    mine_in_their_queue = api.get(CALIBRATION, {"queue": "refunds"}).json()

    assert (mine["agent"], mine["total"]) == ("refund-bot", 1)
    assert [b["n"] for b in mine["bands"]] == [0] * 9 + [1]
    assert mine["certificate"]["certified"] is False
    assert mine_in_their_queue["total"] == 1
    assert (theirs["agent"], theirs["total"]) == ("other-bot", 202)
    assert theirs["bands"][2]["rejected"] == 2
    assert theirs["certificate"]["certified"] is True


def test_the_query_count_does_not_grow_with_the_cases(api, agent, refunds, alice):
    bulk_resolved(agent, refunds, alice, 0.9, 3)
    with CaptureQueriesContext(connection) as few:
        assert api.get(CALIBRATION).json()["total"] == 3
    bulk_resolved(agent, refunds, alice, 0.5, 500)
    bulk_resolved(agent, refunds, alice, 0.7, 500, "modify")
    with CaptureQueriesContext(connection) as many:
        assert api.get(CALIBRATION).json()["total"] == 1003

    # The first request may also note the key's use; no case row is read, only the
    # calibration cells (one per grid point), once, grouped.
    assert len(many.captured_queries) <= len(few.captured_queries)
    sql = [q["sql"] for q in many.captured_queries]
    assert not [q for q in sql if '"escalation_escalation"' in q]
    reads = [q for q in sql if '"escalation_calibrationcell"' in q]
    assert len(reads) == 1 and "GROUP BY" in reads[0]


# --- errors ----------------------------------------------------------------------------------


def test_401_without_a_key(refunds):
    response = Client().get(CALIBRATION)

    assert_error(response, 401, "unauthenticated")


def test_401_with_an_unknown_key(refunds):
    response = Client(headers={"Authorization": "Bearer hnd_nope_nope"}).get(CALIBRATION)

    assert_error(response, 401, "unauthenticated")


def test_405_on_post(api):
    response = post_json(api, CALIBRATION, {"alpha": 0.02})

    assert_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize(
    "value", ["0", "0.0", "0.6", "1", "-0.1", "abc", "nan", "inf", "1e-12", "0x1", "1_0", "0.1.2"]
)
@pytest.mark.parametrize("name", ["alpha", "delta"])
def test_400_on_a_bad_alpha_or_delta(api, name, value):
    response = api.get(CALIBRATION, {name: value})

    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {name}


def test_400_names_both_fields_when_both_are_bad(api):
    response = api.get(CALIBRATION, {"alpha": "2", "delta": "x"})

    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"alpha", "delta"}


@pytest.mark.parametrize(("value", "expected"), [("0.5", 0.5), (".1", 0.1), ("5e-2", 0.05)])
def test_accepted_numbers_and_the_default_for_an_empty_value(api, value, expected):
    body = api.get(CALIBRATION, {"alpha": value, "delta": ""}).json()

    assert (body["alpha"], body["delta"]) == (expected, 0.05)


def test_the_schema_documents_the_operation():
    schema = Client().get(f"{API}/schema", {"format": "json"}).json()

    operation = schema["paths"]["/api/v1/calibration"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {
        "queue",
        "alpha",
        "delta",
        "agent_version",
        "source",
    }
    assert {"200", "400", "401", "405"} <= set(operation["responses"])
    properties = schema["components"]["schemas"]["Calibration"]["properties"]
    assert {"agent", "queue", "alpha", "delta", "note", "bands", "ece", "brier"} <= set(properties)
    assert "certificate" in properties


def test_the_label_source_filter(api, agent, refunds, alice):
    from escalation.models import CalibrationCell

    resolved(agent, refunds, alice, 0.9)  # an escalated label
    CalibrationCell.objects.create(
        agent=agent,
        queue=refunds,
        source="qa",
        g=90,
        n=3,
        approved=3,
        sum_c=2.7,
        sum_c2=2.43,
        sum_c_approved=2.7,
        min_c=0.9,
    )
    assert api.get(CALIBRATION).json()["total"] == 4
    unbiased = api.get(f"{CALIBRATION}?source=unbiased").json()
    assert unbiased["total"] == 3 and unbiased["source"] == "unbiased"
    assert api.get(f"{CALIBRATION}?source=escalated").json()["total"] == 1
    assert_error(api.get(f"{CALIBRATION}?source=guess"), 400, "invalid")
