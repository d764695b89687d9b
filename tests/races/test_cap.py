"""Races on the open-case cap (escalation.cap): creates of one agent at once never pass it,
and far from it, creates that take different shares do not wait for each other."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from escalation import cap, transitions
from escalation.audit import Actor
from escalation.models import CapShare, Escalation
from escalation.models.cases import ACTIVE_STATUSES
from escalation.transitions import TransitionError
from tests.factories import make_case
from tests.support import at_once

pytestmark = pytest.mark.django_db(transaction=True)


def create(agent, queue, summary: str = "at once"):
    try:
        return transitions.create(
            actor=Actor.for_agent(agent),
            agent=agent,
            queue=queue,
            summary=summary,
            confidence=0.5,
            context={},
        )
    except TransitionError as exc:
        return exc.code


@pytest.mark.parametrize("already_open", [0, 13])
def test_creates_at_once_never_pass_the_cap(agent, refunds, already_open):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    agent.max_open_cases = 3 * cap.CAP_SHARES  # 24: some creates find room, some count
    agent.save()
    for _ in range(already_open):
        make_case(agent=agent, queue=refunds)
    tries = agent.max_open_cases + 12 - already_open

    results = at_once([lambda: create(agent, refunds) for _ in range(tries)])

    created = [r for r in results if isinstance(r, Escalation)]
    assert [r for r in results if not isinstance(r, Escalation)] == ["open_case_cap"] * (
        tries - (agent.max_open_cases - already_open)
    ), results
    assert len(created) == agent.max_open_cases - already_open
    active = Escalation.objects.filter(agent=agent, status__in=ACTIVE_STATUSES).count()
    assert active == agent.max_open_cases
    # The bounds never undercount (the next create relies on them).
    assert sum(CapShare.objects.filter(agent=agent).values_list("bound", flat=True)) >= active


def test_creates_in_different_shares_do_not_wait_for_each_other(agent, refunds, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    make_case(agent=agent, queue=refunds)  # the shares exist, with room in all
    shares = {"holder": 0, "other": 1}
    monkeypatch.setattr(cap, "pick_share", lambda: shares[threading.current_thread().name])
    holding, release = threading.Event(), threading.Event()

    def hold_a_create_open() -> None:
        try:
            with transaction.atomic():
                create(agent, refunds, "held")
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    done: list[object] = []

    def another_create() -> None:
        try:
            done.append(create(agent, refunds, "other"))
        finally:
            connection.close()

    holder = threading.Thread(target=hold_a_create_open, name="holder")
    holder.start()
    try:
        assert holding.wait(timeout=30)
        other = threading.Thread(target=another_create, name="other")
        other.start()
        other.join(timeout=10)
        # It went through while the first create still held its room (one agent's creates
        # used to queue on the agent's row until the one ahead committed).
        assert not other.is_alive() and isinstance(done[0], Escalation), done
    finally:
        release.set()
        holder.join(timeout=30)
    assert Escalation.objects.filter(agent=agent).count() == 3
