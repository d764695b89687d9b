from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from escalation import health

urlpatterns = [
    path("", RedirectView.as_view(url="/inbox/", permanent=False)),
    # Browsers ask for /favicon.ico whatever the page says.
    path("favicon.ico", RedirectView.as_view(url="/static/escalation/favicon.svg")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("api/v1/", include("escalation.api.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("escalation.web.urls")),
]

handler404 = "escalation.api.errors.handler404"
handler500 = "escalation.api.errors.handler500"
