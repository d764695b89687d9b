"""Manager statistics routes (see escalation.web.manage_stats and, for the learning loop's
scopes, escalation.web.manage_autonomy)."""

from django.urls import path

from escalation.web import manage_autonomy, manage_stats

SCOPE = "manage/agents/<path:name>/scopes/<int:scope_id>/"

urlpatterns = [
    path("manage/sla/", manage_stats.sla, name="manage-sla"),
    path("manage/reviewers/", manage_stats.reviewers, name="manage-reviewers"),
    path("manage/agents/", manage_stats.agents, name="manage-agents"),
    # <path:…>: an agent's name is a slug, but a row written around the validators must still
    # get a working, escaped link rather than a NoReverseMatch on the whole page.
    path(
        "manage/agents/<path:name>/calibration",
        manage_stats.agent_calibration,
        name="manage-agent-calibration",
    ),
    path(SCOPE, manage_autonomy.scope_page, name="manage-scope"),
    path(SCOPE + "promote", manage_autonomy.promote, name="manage-scope-promote"),
    path(SCOPE + "mode", manage_autonomy.set_mode, name="manage-scope-mode"),
]
