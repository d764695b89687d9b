from django.urls import include, path

from escalation.web import manage_views, views

urlpatterns = [
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/next/", views.next_case, name="next-case"),
    path("cases/<uuid:case_id>/", views.case_page, name="case"),
    path("cases/<uuid:case_id>/updates/", views.case_updates, name="case-updates"),
    path("cases/<uuid:case_id>/claim/", views.claim, name="case-claim"),
    path("cases/<uuid:case_id>/release/", views.release, name="case-release"),
    path("cases/<uuid:case_id>/heartbeat/", views.heartbeat, name="case-heartbeat"),
    path("cases/<uuid:case_id>/decide/", views.decide, name="case-decide"),
    path("cases/<uuid:case_id>/verdict/", views.verdict, name="case-verdict"),
    path("cases/<uuid:case_id>/transfer/", views.transfer, name="case-transfer"),
    path("manage/deliveries/", manage_views.deliveries, name="manage-deliveries"),
    path(
        "manage/deliveries/<int:delivery_id>/redeliver/",
        manage_views.redeliver,
        name="manage-redeliver",
    ),
    path("", include("escalation.web.audit_urls")),
    path("", include("escalation.web.stats_urls")),
    path("", include("escalation.web.export_urls")),
]
