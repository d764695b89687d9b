"""The open-case cap of an agent without a lock that all its creates wait on (see CapShare).

A create takes room in one share of the cap, picked at random: one UPDATE that adds to that
share's bound only while it stays within the cap's share. Creates of one agent in different
shares then hold different row locks until they commit; they used to queue on the agent's
row, and one agent's creates went one at a time through their commits. Where a share has no
room, the create takes the exclusive way instead: the agent's row lock (which serializes the
exclusive ways), then every share's (which waits for the creates holding room to commit), an
exact count, and, at save, the count spread evenly over the shares again.

Deadlock-free: a create tries for room once, before any other lock of the agent's, inside a
savepoint it rolls back when it finds none (an UPDATE that waited for a share's lock and then
found no room keeps that lock); the exclusive way takes the agent's row before any share, and
the shares in order. A create holding room waits for nothing the exclusive way holds (its
foreign-key check on the agent takes KEY SHARE, which NO KEY UPDATE lets through).
"""

from __future__ import annotations

import random

from django.db import connection

from escalation import rows
from escalation.locks import lock_clause, lock_row
from escalation.models import Agent, CapShare, Escalation
from escalation.models.cases import ACTIVE_STATUSES

CAP_SHARES = 8


def pick_share() -> int:
    return random.randrange(CAP_SHARES)  # noqa: S311 - spreads lock waits, not a secret


def share_of_cap(agent: Agent) -> int:
    return agent.max_open_cases // CAP_SHARES


def take_room(agent: Agent, count: int) -> bool:
    """Room for `count` more cases in one share of the cap (held until commit), or False:
    the caller takes the exclusive way."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {rows.table(CapShare)} SET bound = bound + %s"  # noqa: S608
            " WHERE agent_id = %s AND share = %s AND bound + %s <= %s",
            [count, agent.pk, pick_share(), count, share_of_cap(agent)],
        )
        return cursor.rowcount == 1


def lock_and_count(agent: Agent) -> int:
    """The exclusive way: lock the agent, then every share (waiting for the creates that hold
    room in one); the agent's open and claimed cases."""
    lock_row(Agent, agent.pk)
    CapShare.objects.bulk_create(
        [CapShare(agent=agent, share=n) for n in range(CAP_SHARES)], ignore_conflicts=True
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT share FROM {rows.table(CapShare)} WHERE agent_id = %s"  # noqa: S608
            f" ORDER BY share{lock_clause()}",
            [agent.pk],
        )
    return Escalation.objects.filter(agent=agent, status__in=ACTIVE_STATUSES).count()


def spread(agent: Agent, open_cases: int) -> None:
    """After the exclusive way (its locks still held): the shares' bounds sum to the agent's
    open cases, as evenly as they go."""
    base, rest = divmod(open_cases, CAP_SHARES)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {rows.table(CapShare)} SET bound = %s"  # noqa: S608
            " + CASE WHEN share < %s THEN 1 ELSE 0 END WHERE agent_id = %s",
            [base, rest, agent.pk],
        )
