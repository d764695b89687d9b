"""The inbox's live refresh brings the per-queue counts along; the favicon is served."""

from __future__ import annotations

import pytest

from tests.factories import make_case

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true", "HX-Target": "case-list"}


def test_a_refreshed_list_carries_fresh_queue_counts_out_of_band(client, alice, agent, refunds):
    client.force_login(alice)
    make_case(agent=agent, queue=refunds)
    make_case(agent=agent, queue=refunds)

    fragment = client.get("/inbox/", headers=HTMX).content.decode()

    assert "<html" not in fragment
    assert 'id="queue-counts" hx-swap-oob="true"' in fragment
    assert '<span class="count" title="open">2</span>' in fragment


def test_the_full_page_has_the_counts_in_place_not_out_of_band(client, alice, refunds):
    client.force_login(alice)

    page = client.get("/inbox/").content.decode()

    assert 'id="queue-counts"' in page
    assert "hx-swap-oob" not in page


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body.startswith(b"<svg")
