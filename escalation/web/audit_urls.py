"""Manager console routes (see the view module next to it)."""

from django.urls import path

from escalation.web import manage_audit

urlpatterns = [
    path("manage/audit/", manage_audit.audit_log, name="manage-audit"),
    path("manage/audit/export.csv", manage_audit.export_csv, name="manage-audit-export"),
    path("manage/audit/verify/", manage_audit.verify_now, name="manage-audit-verify"),
    path(
        "manage/audit/cases/<uuid:case_id>/",
        manage_audit.case_timeline,
        name="manage-audit-case",
    ),
]
