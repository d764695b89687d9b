"""Manager console routes (see the view module next to it)."""

urlpatterns: list = []
