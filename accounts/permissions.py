"""Who sees and acts on what. Every view and query asks here; templates never decide.

A reviewer works the queues of the teams they belong to; a manager of a team also gets the
manager pages for that team's queues and agents; a superuser (admin) sees everything; a person
in no team sees nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accounts.models import Membership, Role
from escalation import rows

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.db.models import QuerySet


def _team_ids(user: AbstractBaseUser, role: str | None = None) -> QuerySet:
    """The ids of the person's active teams, as a subquery (none for an inactive person)."""
    if not user.is_authenticated or not user.is_active:
        return Membership.objects.none().values("team_id")
    return _member_team_ids(user.pk, role)


def _member_team_ids(user_id: int, role: str | None = None) -> QuerySet:
    memberships = Membership.objects.filter(user_id=user_id, team__is_active=True)
    if role is not None:
        memberships = memberships.filter(role=role)
    return memberships.values("team_id")


def _member_queues(user_id: int) -> QuerySet:
    """The active queues of an active person's active teams."""
    from escalation.models import Queue

    return Queue.objects.filter(is_active=True, team_id__in=_member_team_ids(user_id))


def team_ids(user: AbstractBaseUser, *, role: str | None = None) -> list[int]:
    return list(_team_ids(user, role).values_list("team_id", flat=True))


def visible_queues(user: AbstractBaseUser) -> QuerySet:
    """Queues whose cases this person may see and work."""
    from escalation.models import Queue

    if getattr(user, "is_superuser", False) and user.is_active:
        return Queue.objects.filter(is_active=True)
    if not user.is_authenticated or not user.is_active:
        return Queue.objects.none()
    return _member_queues(user.pk)


def visible_queue_ids(user: AbstractBaseUser) -> list[int]:
    """The ids of visible_queues(user), compiled once (Next case asks on every press)."""
    if not getattr(user, "is_superuser", False) and user.is_authenticated and user.is_active:
        return [queue_id for (queue_id,) in _member_queue_ids(user.pk)]
    return list(visible_queues(user).values_list("pk", flat=True))


def managed_queues(user: AbstractBaseUser) -> QuerySet:
    """Queues whose manager pages (audit, SLA, statistics) this person may see."""
    from escalation.models import Queue

    queues = Queue.objects.filter(is_active=True)
    if getattr(user, "is_superuser", False) and user.is_active:
        return queues
    return queues.filter(team_id__in=_team_ids(user, Role.MANAGER))


def is_manager(user: AbstractBaseUser) -> bool:
    if getattr(user, "is_superuser", False) and user.is_active:
        return True
    return bool(team_ids(user, role=Role.MANAGER))


def can_work_queue(user: AbstractBaseUser, queue_id: int) -> bool:
    """Every claim and decision asks: a member's answer comes from SQL compiled once."""
    if not getattr(user, "is_superuser", False) and user.is_authenticated and user.is_active:
        return bool(_may_work(user.pk, queue_id))
    return visible_queues(user).filter(pk=queue_id).exists()


@rows.compiled
def _member_queue_ids(user_id: int) -> QuerySet:
    return _member_queues(user_id).values_list("pk")


@rows.compiled
def _may_work(user_id: int, queue_id: int) -> QuerySet:
    return _member_queues(user_id).filter(pk=queue_id).values_list("pk")[:1]


def can_manage_queue(user: AbstractBaseUser, queue_id: int) -> bool:
    return managed_queues(user).filter(pk=queue_id).exists()
