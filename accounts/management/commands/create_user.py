"""create_user: a person and their role in a team; an admin is a superuser."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from accounts.models import Membership, Role
from handoff.commands import OperatorCommand, one_line, team_for

ROLES = ("reviewer", "manager", "admin")


def ensure_user(
    *,
    username: str,
    password: str,
    role: str,
    team: str | None = None,
    email: str | None = None,
) -> str:
    """Create the person if missing, set the password either way, and give them `role` in
    `team` (an admin: superuser, and manager of `team` when one is named). Returns one line
    describing the result; raises CommandError on a bad argument, changing nothing."""
    if role not in ROLES:
        raise CommandError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    if role != "admin" and not team:
        raise CommandError(f"--team is required for a {role}")
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        created = user is None
        if user is None:
            user = user_model(**{user_model.USERNAME_FIELD: username})
        if email is not None:
            user.email = email
        if role == "admin":
            user.is_superuser = user.is_staff = True
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(f"--password: {one_line(exc)}") from None
        user.set_password(password)
        try:
            user.full_clean()
        except ValidationError as exc:
            raise CommandError(one_line(exc)) from None
        user.save()
        roles = ["admin (superuser)"] if role == "admin" else []
        if team:
            team_role = Role.MANAGER if role == "admin" else role
            Membership.objects.update_or_create(
                user=user, team=team_for(team), defaults={"role": team_role}
            )
            roles.append(f"{team_role} in team {team}")
    return f"user {username}: {', '.join(roles)} ({'created' if created else 'updated'})"


class Command(OperatorCommand):
    help = "Create or update a person and their role (reviewer, manager) in a team, or an admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--role", required=True, help="reviewer, manager or admin")
        parser.add_argument(
            "--team", help="team slug, created if missing (required unless --role admin)"
        )
        parser.add_argument("--email")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(
            ensure_user(
                username=options["username"],
                password=options["password"],
                role=options["role"],
                team=options["team"],
                email=options["email"],
            )
        )
