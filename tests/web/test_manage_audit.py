"""/manage/audit/: the manager's audit log, its filters and keyset pages, a case's timeline, the
streamed CSV export and the chain verification asked for with "Verify now"."""

from __future__ import annotations

import csv
import html as html_lib
import io
import json
import re
import warnings
from datetime import datetime

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from accounts.models import Role
from escalation import keys, transitions
from escalation.audit import Actor, canonical_json
from escalation.audit_queries import CSV_COLUMNS
from escalation.models import AuditEvent, AuditVerification
from tests.factories import UserFactory, add_member, make_case
from tests.support import tampering
from tests.web.helpers import flashed, hx, text

pytestmark = pytest.mark.django_db

AUDIT = "/manage/audit/"
EXPORT = "/manage/audit/export.csv"
VERIFY = "/manage/audit/verify/"


def timeline_url(case) -> str:
    return f"/manage/audit/cases/{case.pk}/"


def seqs(response) -> list[int]:
    """Event numbers of the rows shown, in the order shown."""
    return [int(s) for s in re.findall(r'<tr class="audit-row" data-seq="(\d+)"', text(response))]


def older_link(response) -> str | None:
    match = re.search(r'<a href="\?([^"]*)">Older</a>', text(response))
    return AUDIT + "?" + html_lib.unescape(match.group(1)) if match else None


def newest_first(events) -> list[int]:
    return list(events.order_by("-seq").values_list("seq", flat=True))


def resolve(case, actor, decision: str, note: str = ""):
    held = transitions.claim(actor=actor, case_id=case.pk)
    return transitions.resolve(
        actor=actor, case_id=case.pk, claim_token=held.claim_token, decision=decision, note=note
    )


def exported(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


@pytest.fixture
def lars(legal):
    """A manager of team legal: ops events are none of his business."""
    user = UserFactory(username="lars")
    add_member(user, legal, Role.MANAGER)
    return user


@pytest.fixture
def root(db):
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def history(agent, other_agent, refunds, support, compliance, as_alice, as_bob):
    """Resolved and open cases across ops and legal queues, by two agents and two reviewers."""
    approved = make_case(agent=agent, queue=refunds, summary="approved refund")
    resolve(approved, as_alice, "approve")
    rejected = make_case(agent=other_agent, queue=support, summary="rejected support")
    resolve(rejected, as_bob, "reject")
    waiting = make_case(agent=agent, queue=support, summary="still open")
    legal_case = make_case(agent=agent, queue=compliance, summary="sanctions hit")
    return {
        "approved": approved,
        "rejected": rejected,
        "waiting": waiting,
        "legal": legal_case,
    }


# --- who may ---------------------------------------------------------------------------------


def test_reviewers_and_outsiders_are_refused_every_audit_url(client, alice, outsider, history):
    for person in (alice, outsider):
        client.force_login(person)
        assert client.get(AUDIT).status_code == 403
        assert client.get(EXPORT).status_code == 403
        assert client.get(timeline_url(history["approved"])).status_code == 403
        assert client.post(VERIFY).status_code == 403
    assert not AuditVerification.objects.exists()


def test_the_pages_need_login_and_the_right_method(client, mona, history):
    for url in (AUDIT, EXPORT, timeline_url(history["approved"])):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.post(VERIFY).status_code == 302
    client.force_login(mona)
    assert client.post(AUDIT).status_code == 405
    assert client.post(EXPORT).status_code == 405
    assert client.post(timeline_url(history["approved"])).status_code == 405
    assert client.get(VERIFY).status_code == 405
    assert not AuditVerification.objects.exists()


def test_a_manager_sees_the_events_of_her_queues_newest_first(client, mona, refunds, history):
    client.force_login(mona)
    response = client.get(AUDIT)
    assert response.status_code == 200
    ops_events = AuditEvent.objects.filter(queue__team__slug="ops")
    assert seqs(response) == newest_first(ops_events)
    assert not set(seqs(response)) & set(
        AuditEvent.objects.filter(escalation=history["legal"]).values_list("seq", flat=True)
    )
    assert timeline_url(history["approved"]) in text(response)


def test_a_manager_of_another_team_sees_neither_ops_events_nor_their_timelines(
    client, lars, history
):
    client.force_login(lars)
    response = client.get(AUDIT)
    assert seqs(response) == newest_first(AuditEvent.objects.filter(escalation=history["legal"]))
    assert client.get(timeline_url(history["approved"])).status_code == 404
    assert client.get(timeline_url(history["legal"])).status_code == 200
    rows = exported(client.get(EXPORT))[1:]
    assert {row[5] for row in rows} == {str(history["legal"].pk)}


def test_a_superuser_also_sees_events_of_no_queue(client, root, mona, agent, history):
    keys.issue_key(agent=agent, actor=Actor.for_user(root))
    key_event = AuditEvent.objects.get(verb="agent.key_created")
    client.force_login(root)
    assert seqs(client.get(AUDIT)) == newest_first(AuditEvent.objects.all())
    client.force_login(mona)
    assert key_event.seq not in seqs(client.get(AUDIT))


# --- filters ---------------------------------------------------------------------------------


def test_the_queue_filter_shows_one_queue(client, mona, history):
    client.force_login(mona)
    shown = seqs(client.get(AUDIT, {"queue": "support"}))
    assert shown == newest_first(AuditEvent.objects.filter(queue__slug="support"))
    assert shown


def test_naming_a_queue_of_another_team_shows_nothing(client, mona, history):
    client.force_login(mona)
    assert seqs(client.get(AUDIT, {"queue": "compliance"})) == []


def test_the_agent_filter_matches_the_cases_agent_and_the_acting_agent(
    client, mona, other_agent, history
):
    client.force_login(mona)
    shown = seqs(client.get(AUDIT, {"agent": other_agent.name}))
    # Every event of the case other-bot posted, including alice's and bob's acts on it.
    assert shown == newest_first(AuditEvent.objects.filter(escalation=history["rejected"]))
    assert any(e.actor_kind == "user" for e in AuditEvent.objects.filter(seq__in=shown)), (
        "a reviewer's act on the agent's case belongs to the agent's history"
    )
    assert seqs(client.get(AUDIT, {"agent": "nobody-bot"})) == []


def test_the_reviewer_filter_shows_what_that_person_did(client, mona, alice, history):
    client.force_login(mona)
    shown = seqs(client.get(AUDIT, {"reviewer": "alice"}))
    assert shown == newest_first(AuditEvent.objects.filter(actor_user=alice))
    assert {e.verb for e in AuditEvent.objects.filter(seq__in=shown)} == {
        "escalation.claimed",
        "escalation.resolved",
    }


def test_the_verb_filter(client, mona, history):
    client.force_login(mona)
    shown = seqs(client.get(AUDIT, {"verb": "escalation.created"}))
    assert shown == newest_first(
        AuditEvent.objects.filter(verb="escalation.created", queue__team__slug="ops")
    )
    assert len(shown) == 3


def test_the_decision_filter_shows_resolutions_with_that_decision(client, mona, history):
    client.force_login(mona)
    shown = seqs(client.get(AUDIT, {"decision": "reject"}))
    assert shown == list(
        AuditEvent.objects.filter(
            verb="escalation.resolved", escalation=history["rejected"]
        ).values_list("seq", flat=True)
    )
    bad = client.get(AUDIT, {"decision": "maybe"})
    assert bad.status_code == 200 and "choose approve, modify or reject" in text(bad)


def test_the_period_filter_keeps_events_between_the_two_days(client, mona, agent, refunds):
    with time_machine.travel(datetime.fromisoformat("2025-01-10T12:00:00+00:00"), tick=False):
        old = make_case(agent=agent, queue=refunds, summary="old one")
    with time_machine.travel(datetime.fromisoformat("2025-02-20T23:30:00+00:00"), tick=False):
        later = make_case(agent=agent, queue=refunds, summary="later one")
    client.force_login(mona)
    january = seqs(client.get(AUDIT, {"from": "2025-01-01", "to": "2025-01-31"}))
    assert january == newest_first(AuditEvent.objects.filter(escalation=old))
    # `to` includes the whole of its day.
    february = seqs(client.get(AUDIT, {"from": "2025-02-20", "to": "2025-02-20"}))
    assert february == newest_first(AuditEvent.objects.filter(escalation=later))
    bad = client.get(AUDIT, {"from": "last tuesday"})
    assert bad.status_code == 200 and "use a date like" in text(bad)


# --- pages and timeline ----------------------------------------------------------------------


def test_older_links_walk_every_event_once(client, mona, agent, refunds, as_alice):
    case = make_case(agent=agent, queue=refunds)
    for _ in range(110):  # claim + release: two events a turn, 220 and more in all
        held = transitions.claim(actor=as_alice, case_id=case.pk)
        transitions.release(actor=as_alice, case_id=case.pk, claim_token=held.claim_token)
    expected = newest_first(AuditEvent.objects.filter(queue=refunds))
    assert len(expected) > 200
    client.force_login(mona)
    url, seen, pages = AUDIT + "?queue=refunds", [], 0
    while url:
        response = client.get(url)
        page = seqs(response)
        assert len(page) <= 100
        seen += page
        pages += 1
        url = older_link(response)
        if url:
            assert "queue=refunds" in url and f"before={page[-1]}" in url
    assert seen == expected and len(set(seen)) == len(seen)
    assert pages == 3


def test_htmx_gets_the_list_alone_and_the_answer_varies_on_it(client, mona, history):
    client.force_login(mona)
    response = client.get(AUDIT, headers=hx("audit-list"))
    assert response.status_code == 200
    assert text(response).lstrip().startswith('<div id="audit-list">')
    assert "Verify now" not in text(response)
    assert "HX-Request" in response["Vary"]


def test_a_case_timeline_lists_its_events_in_order_as_escaped_text(
    client, mona, agent, refunds, as_alice
):
    case = make_case(agent=agent, queue=refunds)
    held = transitions.claim(actor=as_alice, case_id=case.pk)
    transitions.release(actor=as_alice, case_id=case.pk, claim_token=held.claim_token)
    resolve(case, as_alice, "reject", note="<script>alert(1)</script>")
    client.force_login(mona)
    response = client.get(timeline_url(case))
    assert response.status_code == 200
    assert seqs(response) == list(
        AuditEvent.objects.filter(escalation=case).order_by("seq").values_list("seq", flat=True)
    )
    assert len(seqs(response)) >= 5
    page = text(response)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "alice" in page and "escalation.resolved" in page


def test_the_pages_carry_no_inline_script_or_style(client, mona, history):
    client.force_login(mona)
    for url in (AUDIT, timeline_url(history["approved"])):
        page = text(client.get(url))
        assert "<style" not in page and " style=" not in page
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)


# --- CSV export ------------------------------------------------------------------------------


def test_the_csv_export_streams_the_filtered_rows_as_in_the_database(client, mona, history):
    client.force_login(mona)
    response = client.get(EXPORT, {"queue": "support"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    header, *rows = exported(response)
    assert header == CSV_COLUMNS
    events = AuditEvent.objects.filter(queue__slug="support").order_by("seq")
    assert rows == [
        [
            str(e.seq),
            e.created_at.isoformat(),
            e.verb,
            e.actor_kind,
            e.actor_name,
            str(e.escalation_id),
            "support",
            canonical_json(e.data),
            e.hash,
        ]
        for e in events
    ]
    assert rows


def test_the_csv_export_takes_the_same_filters_as_the_page(client, mona, history):
    client.force_login(mona)
    rows = exported(client.get(EXPORT, {"decision": "approve"}))[1:]
    assert [int(row[0]) for row in rows] == seqs(client.get(AUDIT, {"decision": "approve"}))
    assert [json.loads(row[7])["decision"] for row in rows] == ["approve"]


def test_the_csv_export_neutralises_cells_a_spreadsheet_would_run(client, ops, agent, refunds):
    evil = UserFactory(username="=evil")
    add_member(evil, ops, Role.MANAGER)
    case = make_case(agent=agent, queue=refunds)
    transitions.cancel(
        actor=Actor.for_user(evil), case_id=case.pk, reason='=HYPERLINK("http://x.test","y")'
    )
    client.force_login(evil)
    rows = exported(client.get(EXPORT, {"verb": "escalation.cancelled"}))[1:]
    assert len(rows) == 1
    assert rows[0][4] == "'=evil"
    assert json.loads(rows[0][7])["reason"].startswith("=HYPERLINK")  # inside a JSON object
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in rows[0])


def test_under_asgi_the_export_streams_without_buffering(mona, history):
    """Django buffers a synchronous iterator whole under ASGI (with a warning); the view gives
    the ASGI server an asynchronous one."""
    client = AsyncClient()

    async def fetch():
        await client.aforce_login(mona)
        response = await client.get(EXPORT, {"queue": "refunds"})
        body = b"".join([chunk async for chunk in response.streaming_content])
        return response, body

    with warnings.catch_warnings():
        # Only Django's "must consume synchronous iterators" warning (a buffered stream) fails
        # the test; others, such as WhiteNoise's missing staticfiles/ on a fresh clone, do not.
        warnings.filterwarnings("error", message=".*synchronous iterators.*")
        response, body = async_to_sync(fetch)()
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(body.decode())))[1:]
    assert [int(row[0]) for row in rows] == list(
        AuditEvent.objects.filter(queue__slug="refunds")
        .order_by("seq")
        .values_list("seq", flat=True)
    )


# --- chain verification ----------------------------------------------------------------------


def test_the_page_says_when_the_chain_was_never_verified(client, mona, history):
    client.force_login(mona)
    page = text(client.get(AUDIT))
    assert "never been verified" in page and "Verify now" in page


@pytest.mark.django_db(transaction=True)
def test_verify_now_checks_the_chain_and_the_page_shows_it_intact(client, mona, history):
    # Real commits: the task is rung after the verification row commits and, eager in tests,
    # has finished by the time the view words its message.
    client.force_login(mona)
    response = client.post(VERIFY)
    assert response.status_code == 302 and response["Location"] == AUDIT
    verification = AuditVerification.objects.get()
    total = AuditEvent.objects.count()
    assert verification.finished_at is not None and verification.ok is True
    assert verification.checked == total and verification.head_seq == total
    assert verification.requested_by == mona
    assert f"The audit chain is intact ({total} events)." in flashed(response)
    page = text(client.get(AUDIT))
    assert f"Intact: {total} events checked" in page and "never been verified" not in page


def test_verify_now_names_the_first_bad_event_after_tampering(
    client, mona, history, django_capture_on_commit_callbacks
):
    victim = AuditEvent.objects.filter(verb="escalation.resolved").order_by("seq").first()
    with tampering():
        AuditEvent.objects.filter(seq=victim.seq).update(data={"decision": "approve", "x": 1})
    client.force_login(mona)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(VERIFY)
    assert response.status_code == 302
    verification = AuditVerification.objects.get()
    assert verification.ok is False and verification.first_bad_seq == victim.seq
    assert verification.checked == victim.seq - 1
    page = html_lib.unescape(text(client.get(AUDIT)))
    assert f"first bad event {victim.seq}" in page
    assert f"event {victim.seq} was altered" in page


def test_a_verification_not_finished_yet_is_shown_as_pending(client, mona, history):
    AuditVerification.objects.create(started_at=datetime.fromisoformat("2025-03-01T10:00:00+00:00"))
    client.force_login(mona)
    page = text(client.get(AUDIT))
    assert "has not finished yet" in page and "never been verified" in page
