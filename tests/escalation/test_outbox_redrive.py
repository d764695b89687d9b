"""The re-drive re-sends an undone item once per resend interval, not on every run: sent on
every run, a backlog that outlasted the re-drive period grew by one message per item per run
(found by `make soak`, docs/reliability.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from escalation import outbox, sweeps
from escalation.models import OutboxItem
from tests.factories import make_case

pytestmark = pytest.mark.django_db


def test_an_item_the_redrive_sent_is_sent_again_only_after_the_resend_interval(
    settings, monkeypatch, agent, refunds
):
    settings.HANDOFF_OUTBOX_RESEND_SECONDS = 60
    sent: list[int] = []
    monkeypatch.setattr(outbox, "send", lambda item_id: sent.append(item_id) or True)
    case = make_case(agent=agent, queue=refunds)  # its after-commit send is the fake one
    item = OutboxItem.objects.get(escalation=case, kind="route")
    sent.clear()
    later = timezone.now() + timedelta(seconds=settings.HANDOFF_OUTBOX_GRACE_SECONDS + 1)

    assert sweeps.redrive_outbox(now=later) == 1
    assert sweeps.redrive_outbox(now=later + timedelta(seconds=5)) == 0
    assert sweeps.redrive_outbox(now=later + timedelta(seconds=59)) == 0
    assert sweeps.redrive_outbox(now=later + timedelta(seconds=61)) == 1
    assert sent == [item.pk, item.pk]


def test_an_item_whose_send_failed_is_tried_again_on_the_next_run(monkeypatch, agent, refunds):
    monkeypatch.setattr(outbox, "send", lambda item_id: False)  # the broker is down
    make_case(agent=agent, queue=refunds)
    later = timezone.now() + timedelta(minutes=1)

    assert sweeps.redrive_outbox(now=later) == 0
    monkeypatch.setattr(outbox, "send", lambda item_id: True)  # back
    assert sweeps.redrive_outbox(now=later + timedelta(seconds=1)) == 1
