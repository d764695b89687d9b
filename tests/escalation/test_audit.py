"""The audit chain: intact after real work, and every kind of tampering is caught."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from escalation import audit, transitions
from escalation.audit import Actor
from escalation.models import AuditChainHead, AuditEvent
from tests.support import tampering

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(case, as_alice, as_agent):
    """Six events: created, routed, claimed, context_added, released, cancelled."""
    transitions.route(case_id=case.pk)
    claimed = transitions.claim(actor=as_alice, case_id=case.pk)
    transitions.append_context(actor=as_agent, case_id=case.pk, note="more")
    transitions.release(actor=as_alice, case_id=case.pk, claim_token=claimed.claim_token)
    transitions.cancel(actor=as_agent, case_id=case.pk, reason="resolved elsewhere")
    return list(AuditEvent.objects.order_by("seq"))


def test_a_chain_of_real_work_verifies(history):
    report = audit.verify_chain()
    assert report.ok and report.checked == 6 and report.head_seq == 6
    assert [e.seq for e in history] == [1, 2, 3, 4, 5, 6]
    assert all(b.prev_hash == a.hash for a, b in zip(history, history[1:], strict=False))


def test_the_hash_parts_around_prev_and_seq_are_the_whole_events_canonical_json():
    # Hashes written before the parts existed must still verify: the parts, joined around
    # the previous hash and the number, are exactly the canonical JSON of the whole event.
    at = datetime(2026, 12, 2, 18, 30, 1, 123456, tzinfo=UTC)
    data = {"note": 'naïve \u2028 "quoted" ✓', "nested": {"b": [1, 2.5, None], "a": True}}
    parts = audit._hash_parts(
        created_at=at,
        actor_kind="agent",
        actor_user_id=None,
        actor_agent_id=7,
        actor_name="bot ✓",
        verb="escalation.created",
        escalation_id="0b6f6a3e-5b8e-4c1e-9a57-0d1f2c3b4a59",
        queue_id=3,
        data=data,
    )
    whole = {
        "seq": 42,
        "at": "2026-12-02T18:30:01.123456+00:00",
        "actor": ["agent", None, 7, "bot ✓"],
        "verb": "escalation.created",
        "case": "0b6f6a3e-5b8e-4c1e-9a57-0d1f2c3b4a59",
        "queue": 3,
        "data": data,
        "prev": "ab" * 32,
    }
    assert parts[0] + "ab" * 32 + parts[1] + "42" + parts[2] == audit.canonical_json(whole)


def test_one_write_of_many_events_is_chained_by_postgresql_as_python_would(case, as_alice):
    subjects = [(case, None, {"n": n, "text": f"ü {n}"}) for n in range(3)]
    with transaction.atomic():
        audit.record(actor=as_alice, verb="test.python", case=case)  # head row exists now
        # Two events the way SQLite writes them, then three the way PostgreSQL does.
        python_path = [
            AuditEvent(created_at=case.created_at, actor_kind="system", actor_name="system",
                       verb="test.python", data={"n": n})
            for n in range(2)
        ]  # fmt: skip
        assert audit._append(python_path)
        with CaptureQueriesContext(connection) as queries:
            events = audit.record_many(actor=as_alice, verb="test.many", subjects=subjects)
    assert len(queries.captured_queries) == 1  # one INSERT into the pending table
    assert [e.seq for e in events] == [None] * 3  # numbered by the seal, not in Python
    stored = list(AuditEvent.objects.filter(verb="test.many").order_by("seq"))
    first = python_path[-1].seq + 1
    assert [e.seq for e in stored] == [first, first + 1, first + 2]
    assert [e.data for e in stored] == [data for _, _, data in subjects]
    assert all(audit.hash_of(e) == e.hash for e in stored)
    assert stored[0].prev_hash == python_path[-1].hash
    assert AuditChainHead.objects.get(pk=1).hash == stored[-1].hash
    assert audit.verify_chain().ok


def _pending_events() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM escalation_auditpending")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_chain_head_is_taken_at_commit_so_an_open_transaction_holds_up_no_writer():
    """A transaction that recorded an event and is still working (its client busy, or waiting
    for a round trip) does not hold the chain head: another writer records and commits past
    it, and the first one's event is chained after, at its own commit."""
    recorded, finish = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                audit.record(actor=Actor.system(), verb="test.slow")
                recorded.set()
                assert finish.wait(10)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert recorded.wait(10)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")  # a wait for the head fails here
        audit.record(actor=Actor.system(), verb="test.quick")
    assert AuditEvent.objects.filter(verb="test.slow").count() == 0  # not committed yet
    finish.set()
    thread.join(10)
    assert not errors, errors
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", "verb")) == [
        (1, "test.quick"),
        (2, "test.slow"),
    ]
    assert _pending_events() == 0
    assert audit.verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_events_of_a_rolled_back_transaction_or_savepoint_are_never_chained():
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        audit.record(actor=Actor.system(), verb="test.rolled_back")
        1 / 0  # noqa: B018 - the failure that rolls the transaction back
    with transaction.atomic():
        audit.record(actor=Actor.system(), verb="test.kept")
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            audit.record(actor=Actor.system(), verb="test.savepoint_rolled_back")
            1 / 0  # noqa: B018
        audit.record(actor=Actor.system(), verb="test.kept")
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", "verb")) == [
        (1, "test.kept"),
        (2, "test.kept"),
    ]
    assert _pending_events() == 0
    assert audit.verify_chain().ok


def test_an_empty_chain_verifies(db):
    report = audit.verify_chain()
    assert report.ok and report.checked == 0


@pytest.mark.django_db(transaction=True)
def test_record_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError):
        audit.record(actor=Actor.system(), verb="test.outside")


def test_an_edited_event_is_caught(history):
    with tampering():
        AuditEvent.objects.filter(seq=3).update(actor_name="mallory")
    report = audit.verify_chain()
    assert not report.ok and report.first_bad_seq == 3 and "altered" in report.problem


def test_an_edited_payload_is_caught_even_with_its_hash_recomputed(history):
    event = AuditEvent.objects.get(seq=2)
    event.data = {**event.data, "priority": "low"}
    with tampering():
        AuditEvent.objects.filter(seq=2).update(data=event.data, hash=audit.hash_of(event))
    report = audit.verify_chain()
    assert not report.ok and report.first_bad_seq == 3  # the next event no longer follows


def test_a_deleted_event_is_caught(history):
    with tampering():
        AuditEvent.objects.filter(seq=4).delete()
    report = audit.verify_chain()
    assert not report.ok and report.first_bad_seq == 4 and "missing" in report.problem


def test_reordered_events_are_caught(history):
    with tampering():
        AuditEvent.objects.filter(seq=2).update(seq=1000)
        AuditEvent.objects.filter(seq=3).update(seq=2)
        AuditEvent.objects.filter(seq=1000).update(seq=3)
    report = audit.verify_chain()
    assert not report.ok and report.first_bad_seq == 2


def test_a_truncated_tail_is_caught_by_the_head_row(history):
    with tampering():
        AuditEvent.objects.filter(seq__gte=5).delete()
    report = audit.verify_chain()
    assert not report.ok and "head records event 6" in report.problem


def test_a_truncated_tail_with_a_rewritten_head_is_caught_by_the_checkpoint(history):
    checkpoint = (6, history[-1].hash)
    with tampering():
        AuditEvent.objects.filter(seq__gte=5).delete()
    AuditChainHead.objects.filter(pk=1).update(seq=4, hash=history[3].hash)
    assert audit.verify_chain().ok  # without the outside copy, a clean cut looks whole
    report = audit.verify_chain(checkpoint=checkpoint)
    assert not report.ok and report.first_bad_seq == 6 and "missing" in report.problem


def test_a_rewritten_chain_is_caught_by_the_checkpoint(history):
    checkpoint = (4, history[3].hash)
    # Rewrite event 2 and re-hash everything after it, as a thorough forger would.
    with tampering():
        events = list(AuditEvent.objects.order_by("seq"))
        events[1].actor_name = "mallory"
        prev = events[0].hash
        for event in events[1:]:
            event.prev_hash = prev
            event.hash = audit.hash_of(event)
            AuditEvent.objects.filter(seq=event.seq).update(
                actor_name=event.actor_name, prev_hash=event.prev_hash, hash=event.hash
            )
            prev = event.hash
    AuditChainHead.objects.filter(pk=1).update(hash=prev)
    assert audit.verify_chain().ok
    report = audit.verify_chain(checkpoint=checkpoint)
    assert not report.ok and report.first_bad_seq == 4 and "checkpoint" in report.problem


def test_a_matching_checkpoint_passes(history):
    assert audit.verify_chain(checkpoint=(3, history[2].hash)).ok


@pytest.mark.parametrize(
    "text", ["", "12", "x:abc", "0:" + "a" * 64, "5:" + "g" * 64, "5:" + "a" * 63]
)
def test_malformed_checkpoints_are_refused(text):
    with pytest.raises(ValueError):
        audit.parse_checkpoint(text)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE escalation_auditevent SET actor_name = 'mallory' WHERE seq = 1",
        "DELETE FROM escalation_auditevent WHERE seq = 1",
    ],
)
def test_the_database_refuses_update_and_delete_of_audit_rows(history, statement):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditEvent.objects.get(seq=1).actor_name == history[0].actor_name


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
def test_the_orm_cannot_delete_audit_rows_either(history):
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(seq=2).delete()
    assert AuditEvent.objects.count() == 6
