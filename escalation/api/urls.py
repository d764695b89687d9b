from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

# (schema is imported for its side effect: it registers the auth scheme.)
from escalation.api import batch, decisions, longpoll, schema, views  # noqa: F401
from escalation.api.errors import get_only

urlpatterns = [
    path("escalations", views.EscalationListCreate.as_view(), name="api-escalations"),
    # Before escalations/<id>, which would take "batch" for an id.
    path("escalations/batch", batch.EscalationBatch.as_view(), name="api-escalations-batch"),
    path("escalations/<str:id>", views.EscalationDetail.as_view(), name="api-escalation"),
    path(
        "escalations/<str:id>/context",
        views.EscalationContext.as_view(),
        name="api-escalation-context",
    ),
    path(
        "escalations/<str:id>/cancel",
        views.EscalationCancel.as_view(),
        name="api-escalation-cancel",
    ),
    path(
        "escalations/<str:id>/resolution",
        longpoll.wait_for_resolution,
        name="api-escalation-resolution",
    ),
    path("queues", views.QueueList.as_view(), name="api-queues"),
    path("labels", views.LabelList.as_view(), name="api-labels"),
    path("decisions", decisions.Decisions.as_view(), name="api-decisions"),
    path("calibration", views.Calibration.as_view(), name="api-calibration"),
    path("schema", get_only(SpectacularAPIView.as_view()), name="api-schema"),
    # The split view serves its script as a file, so the docs page works under the CSP.
    path(
        "docs",
        get_only(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
]
