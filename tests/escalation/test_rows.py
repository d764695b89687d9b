"""escalation.rows: the plain-SQL reads and writes of the hot paths give what the ORM gives."""

from __future__ import annotations

from contextlib import nullcontext

import psycopg
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import permissions
from escalation import audit, rows, transitions
from escalation.audit import Actor
from escalation.models import AuditEvent, Escalation, OutboxItem, Queue

pytestmark = pytest.mark.django_db


def test_a_row_read_in_sql_equals_the_orms_instance(case):
    sql = f"SELECT {rows.columns(Escalation, 'c')} FROM {rows.table(Escalation)} c WHERE c.id = %s"
    (read,) = rows.fetch(sql, [case.pk], Escalation)
    orm = Escalation.objects.get(pk=case.pk)
    for field in Escalation._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(orm, field.attname), field.name
    assert isinstance(read.context, dict) and read.pk == case.pk
    assert rows.fetch(sql, ["00000000-0000-0000-0000-000000000000"], Escalation) is None


def test_update_writes_the_named_fields_only(case, alice):
    case.summary = "changed in memory only"
    case.claimed_by = alice
    case.lease_expires_at = timezone.now()
    rows.update(case, ["claimed_by", "lease_expires_at"])
    stored = Escalation.objects.get(pk=case.pk)
    assert stored.claimed_by_id == alice.pk
    assert stored.lease_expires_at == case.lease_expires_at
    assert stored.summary != "changed in memory only"


def test_update_of_a_missing_row_raises(case):
    case.pk = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ObjectDoesNotExist):
        rows.update(case, ["summary"])


def test_compiled_sql_is_built_once_and_run_with_new_ids(refunds, support):
    builds = []

    @rows.compiled
    def queue_slug(queue_id: int):
        builds.append(queue_id)
        return Queue.objects.filter(pk=queue_id).values_list("slug")

    assert queue_slug(refunds.pk) == [("refunds",)]
    with CaptureQueriesContext(connection) as captured:
        assert queue_slug(support.pk) == [("support",)]
    assert len(builds) == 1 and len(captured.captured_queries) == 1


def test_compiled_refuses_a_build_that_does_not_pass_its_id_through():
    @rows.compiled
    def ignores_its_id(queue_id: int):
        return Queue.objects.filter(pk=1).values_list("slug")

    with pytest.raises(ValueError, match="each value must be one parameter"):
        ignores_its_id(5)


def test_visible_queue_ids_and_can_work_agree_with_visible_queues(
    alice, outsider, refunds, support, compliance, ops
):
    inactive = User.objects.create_user("gone", is_active=False)
    admin = User.objects.create_superuser("root", password="x")  # noqa: S106
    support.is_active = False
    support.save()
    for user in (alice, outsider, inactive, admin):
        expected = set(permissions.visible_queues(user).values_list("pk", flat=True))
        assert set(permissions.visible_queue_ids(user)) == expected, user.username
        for queue in (refunds, support, compliance):
            assert permissions.can_work_queue(user, queue.pk) == (queue.pk in expected)
    assert set(permissions.visible_queue_ids(alice)) == {refunds.pk}
    ops.is_active = False
    ops.save()
    assert permissions.visible_queue_ids(alice) == []
    assert not permissions.can_work_queue(alice, refunds.pk)


def test_allowed_queue_agrees_with_allowed_queues(agent, other_agent, refunds, support, compliance):
    other_agent.all_queues = False
    other_agent.save()
    other_agent.queues.set([refunds, compliance])
    compliance.is_active = False
    compliance.save()
    for who in (agent, other_agent):
        expected = set(who.allowed_queues().values_list("slug", flat=True))
        for queue in (refunds, support, compliance):
            found = who.allowed_queue(queue.slug)
            assert (found is not None) == (queue.slug in expected), (who.name, queue.slug)
            if found is not None:
                assert found == queue and found.sla_policy == queue.sla_policy
        assert who.allowed_queue("no-such-queue") is None
    assert {q.slug for q in other_agent.allowed_queues()} == {"refunds"}


def test_read_own_case_renders_as_the_orms_case(case, agent, other_agent, as_alice):
    from escalation import transitions
    from escalation.api.serializers import case_resource
    from escalation.api.views import own_cases, read_own_case

    assert case_resource(read_own_case(agent, case.pk)) == case_resource(
        own_cases(agent).get(pk=case.pk)
    )
    claimed = transitions.claim(actor=as_alice, case_id=case.pk)
    transitions.resolve(
        actor=as_alice, case_id=case.pk, claim_token=claimed.claim_token, decision="approve"
    )
    with CaptureQueriesContext(connection) as captured:
        resource = case_resource(read_own_case(agent, case.pk))
    assert len(captured.captured_queries) == 1
    assert resource == case_resource(own_cases(agent).get(pk=case.pk))
    assert resource["resolution"]["resolved_by"] == "alice"
    assert read_own_case(other_agent, case.pk) is None


def test_insert_of_many_rows_gives_each_object_its_own_row_and_key(case):
    items = [OutboxItem(kind="route", escalation=case, payload={"n": n}) for n in range(5)]

    rows.insert(items)

    assert len({item.pk for item in items}) == 5
    for item in items:
        assert OutboxItem.objects.get(pk=item.pk).payload == item.payload


@pytest.mark.django_db(transaction=True)
def test_many_rows_go_in_through_a_client_side_cursor_too(agent, refunds):
    """With DATABASE_PREPARED_STATEMENTS=0 psycopg binds parameters in the client: the arrays
    that a batch's cases, routing jobs and audit events go in as (binary on the server) are
    then quoted as literals, with the quotes, braces and backslashes in their values intact."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL cursors")
    client_side = connections.create_connection("default")
    options = {
        name: value
        for name, value in client_side.settings_dict["OPTIONS"].items()
        if name not in ("server_side_binding", "prepare_threshold", "pool")
    }
    client_side.settings_dict = {**client_side.settings_dict, "OPTIONS": options}
    default = connections["default"]
    connections["default"] = client_side
    contexts = [{"n": n, "text": 'it\'s "quoted", {braced} and \\ slashed'} for n in range(3)]
    try:
        with transaction.atomic():
            intake = transitions.Intake(actor=Actor.for_agent(agent), agent=agent, expected=3)
            for context in contexts:
                intake.add(queue=refunds, summary="one of three", confidence=0.5, context=context)
            cases = intake.save()
        with client_side.cursor() as cursor:
            assert isinstance(cursor.cursor, psycopg.ClientCursor)
    finally:
        client_side.close()
        connections["default"] = default

    stored = Escalation.objects.filter(pk__in=[case.pk for case in cases])
    assert sorted(case.context["n"] for case in stored) == [0, 1, 2]
    assert all(case.context == contexts[case.context["n"]] for case in stored)
    assert OutboxItem.objects.filter(escalation__in=cases, kind="route").count() == 3
    assert AuditEvent.objects.filter(escalation__in=cases, verb="escalation.created").count() == 3
    assert audit.verify_chain().ok


def _django_values(obj) -> list:
    db = connections["default"]
    model = type(obj)
    auto = model._meta.pk if model._meta.pk.db_returning else None
    return [
        f.get_db_prep_save(f.pre_save(obj, True), db)
        for f in model._meta.concrete_fields
        if f is not auto
    ]


def _comparable(value):
    # Jsonb and the typed integers of psycopg: compare what they wrap, and their kind.
    return type(value), getattr(value, "obj", value)


def test_insert_prepares_each_value_as_django_does(case, alice):
    db = connections["default"]
    case.claimed_by = alice
    event = AuditEvent(actor_kind="agent", actor_name="bot", verb="x", created_at=timezone.now())
    item = OutboxItem(kind="route", escalation=case, available_at=timezone.now())
    # Values of other types than the fields hold take Django's own way: a naive time, a key
    # as text, a number as text.
    odd = Escalation(**{f.attname: getattr(case, f.attname) for f in Escalation._meta.fields})
    odd.created_at = timezone.now().replace(tzinfo=None)
    odd.id, odd.agent_id, odd.confidence = str(case.pk), str(case.agent_id), "0.5"
    for obj in (case, event, item, odd):
        model = type(obj)
        auto = model._meta.pk if model._meta.pk.db_returning else None
        with pytest.warns(RuntimeWarning) if obj is odd else nullcontext():
            ours = [save(obj, db) for save in rows._savers(model, auto, connection.vendor)]
        with pytest.warns(RuntimeWarning) if obj is odd else nullcontext():
            theirs = _django_values(obj)
        assert [_comparable(v) for v in ours] == [_comparable(v) for v in theirs], model
