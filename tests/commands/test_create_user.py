"""create_user: people, their role in a team, and admins."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from accounts.models import Membership, Role, Team

pytestmark = pytest.mark.django_db

User = get_user_model()


def test_create_user_makes_a_reviewer_in_a_new_team(run):
    out = run("create_user", username="rita", password="s3cret-pass", role="reviewer", team="ops")

    assert out.strip() == "user rita: reviewer in team ops (created)"
    user = User.objects.get(username="rita")
    assert user.check_password("s3cret-pass")
    assert not user.is_superuser and not user.is_staff
    team = Team.objects.get(slug="ops")
    assert team.name == "Ops"
    assert Membership.objects.get(user=user, team=team).role == Role.REVIEWER


def test_create_user_with_an_email_stores_it(run):
    run(
        "create_user",
        username="rita",
        password="s3cret-pass",
        role="manager",
        team="ops",
        email="rita@example.com",
    )

    assert User.objects.get(username="rita").email == "rita@example.com"


def test_create_user_for_an_existing_member_updates_role_and_password(run, alice, ops):
    out = run("create_user", username="alice", password="new-password", role="manager", team="ops")

    assert out.strip() == "user alice: manager in team ops (updated)"
    alice.refresh_from_db()
    assert alice.check_password("new-password")
    assert Membership.objects.filter(user=alice).count() == 1
    assert Membership.objects.get(user=alice, team=ops).role == Role.MANAGER


def test_create_user_adds_a_membership_in_a_second_team(run, alice, ops):
    run("create_user", username="alice", password="new-password", role="reviewer", team="legal")

    assert set(Membership.objects.filter(user=alice).values_list("team__slug", flat=True)) == {
        "ops",
        "legal",
    }


def test_create_user_as_admin_makes_a_superuser_without_a_team(run):
    out = run("create_user", username="root", password="s3cret-pass", role="admin")

    assert out.strip() == "user root: admin (superuser) (created)"
    user = User.objects.get(username="root")
    assert user.is_superuser and user.is_staff
    assert not Membership.objects.filter(user=user).exists()


def test_create_user_as_admin_with_a_team_also_manages_it(run):
    out = run("create_user", username="root", password="s3cret-pass", role="admin", team="ops")

    assert "manager in team ops" in out
    assert Membership.objects.get(user__username="root").role == Role.MANAGER


def test_create_user_refuses_an_unknown_role(run):
    with pytest.raises(CommandError, match="--role must be one of"):
        run("create_user", username="rita", password="s3cret-pass", role="boss", team="ops")
    assert not User.objects.exists()


@pytest.mark.parametrize("role", ["reviewer", "manager"])
def test_create_user_requires_a_team_for_reviewers_and_managers(run, role):
    with pytest.raises(CommandError, match=f"--team is required for a {role}"):
        run("create_user", username="rita", password="s3cret-pass", role=role)
    assert not User.objects.exists()


def test_create_user_refuses_a_short_password(run):
    with pytest.raises(CommandError, match="--password: .*too short"):
        run("create_user", username="rita", password="short", role="reviewer", team="ops")
    assert not User.objects.exists()


def test_create_user_refuses_a_bad_team_slug_and_writes_nothing(run):
    with pytest.raises(CommandError, match="is not a slug"):
        run(
            "create_user",
            username="rita",
            password="s3cret-pass",
            role="reviewer",
            team="the ops team",
        )
    assert not User.objects.exists()
    assert not Team.objects.exists()


def test_create_user_refuses_a_bad_username(run):
    with pytest.raises(CommandError, match="username"):
        run(
            "create_user",
            username="rita smith!",
            password="s3cret-pass",
            role="reviewer",
            team="ops",
        )


def test_create_user_refuses_a_bad_email(run):
    with pytest.raises(CommandError, match="email"):
        run(
            "create_user",
            username="rita",
            password="s3cret-pass",
            role="reviewer",
            team="ops",
            email="not-an-email",
        )


def test_create_user_requires_username_password_and_role(run):
    with pytest.raises(CommandError, match="required: --username, --password, --role"):
        run("create_user")
