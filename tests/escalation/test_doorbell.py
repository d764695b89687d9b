"""The outbox doorbell: committed items reach the real broker from the process's doorbell
thread, many to a message and every one of them; flush() sends at once what has gathered."""

from __future__ import annotations

import threading

import pytest
import redis
from django.conf import settings

from escalation import outbox
from escalation.models import OutboxItem
from tests.factories import make_case
from tests.support import celery_broker, queued_tasks, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def messages(app) -> list[tuple[str, list[int]]]:
    """(task name, item ids) of each message waiting in the task queue, oldest first."""
    prefix = app.conf.broker_transport_options.get("global_keyprefix", "")
    client = redis.Redis.from_url(app.conf.broker_url)
    return queued_tasks(client, f"{prefix}{settings.CELERY_TASK_DEFAULT_QUEUE}")


@pytest.fixture
def broker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    outbox.doorbell.flush()  # nothing an earlier test gathered
    with celery_broker(settings.CELERY_BROKER_URL) as app:
        yield app
        outbox.doorbell.flush()


def test_items_committed_together_go_in_few_messages_and_none_is_lost(
    settings, broker, agent, refunds
):
    settings.HANDOFF_OUTBOX_RING_LINGER_MS = 300

    def post(count: int) -> None:
        for _ in range(count):
            make_case(agent=agent, queue=refunds)

    threads = [threading.Thread(target=post, args=(5,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    items = set(OutboxItem.objects.filter(kind="route").values_list("pk", flat=True))
    assert len(items) == 20

    assert wait_until(lambda: {i for _, ids in messages(broker) for i in ids} == items)
    sent = messages(broker)
    assert sorted(i for _, ids in sent for i in ids) == sorted(items)  # each id once
    assert len(sent) < len(items)
    assert all(len(ids) <= outbox.MAX_IDS_PER_MESSAGE for _, ids in sent)
    assert {task for task, _ in sent} <= {
        "escalation.tasks.run_outbox_item",
        "escalation.tasks.run_outbox_items",
    }


def test_flush_sends_what_has_gathered_at_once(settings, broker, agent, refunds):
    settings.HANDOFF_OUTBOX_RING_LINGER_MS = 60_000  # the thread would wait a minute
    case = make_case(agent=agent, queue=refunds)
    item = OutboxItem.objects.get(escalation=case, kind="route")
    assert messages(broker) == []

    outbox.doorbell.flush()

    assert messages(broker) == [("escalation.tasks.run_outbox_item", [item.pk])]


def test_more_ids_than_a_message_holds_are_split(settings, broker):
    settings.HANDOFF_OUTBOX_RING_LINGER_MS = 60_000
    ids = list(range(1, 2 * outbox.MAX_IDS_PER_MESSAGE + 2))
    outbox.doorbell.ring(ids)

    outbox.doorbell.flush()

    sent = messages(broker)
    most = outbox.MAX_IDS_PER_MESSAGE
    assert [len(batch) for _, batch in sent] == [most, most, 1]
    assert [i for _, batch in sent for i in batch] == ids
