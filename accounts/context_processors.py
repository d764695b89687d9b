from __future__ import annotations

from accounts import permissions


def roles(request) -> dict:
    """What the navigation may offer; every page and action still checks on its own."""
    user = getattr(request, "user", None)
    return {"is_manager": bool(user and user.is_authenticated and permissions.is_manager(user))}
