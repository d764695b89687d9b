"""Manager console routes (see the view module next to it)."""

from django.urls import path, re_path

from escalation.web import manage_exports

urlpatterns = [
    path("manage/exports/", manage_exports.export_page, name="manage-exports"),
    re_path(
        r"^manage/exports/labels\.(?P<fmt>jsonl|csv)$",
        manage_exports.export_labels,
        name="manage-export-labels",
    ),
]
