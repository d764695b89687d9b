"""Delivery fixtures: receivers on 127.0.0.1 (stopped after the test), webhook settings
compressed for tests (127.0.0.1 allowed over http, a [1 s, 1 s] retry schedule, short
timeouts), and refund-bot pointed at a receiver."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.delivery.helpers")

from tests.delivery.receiver import Receiver  # noqa: E402


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.HANDOFF_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.HANDOFF_WEBHOOK_RETRY_SCHEDULE = [1, 1]
    settings.HANDOFF_WEBHOOK_CONNECT_TIMEOUT = 1
    settings.HANDOFF_WEBHOOK_READ_TIMEOUT = 2
    settings.HANDOFF_WEBHOOK_LEASE_SECONDS = 4
    return settings


@pytest.fixture
def make_receiver():
    """make_receiver(500, 500, 200) -> a started Receiver answering that script."""
    started: list[Receiver] = []

    def make(*script) -> Receiver:
        receiver = Receiver(script or (200,)).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def receiver(make_receiver):
    return make_receiver(200)


@pytest.fixture
def hooked_agent(agent, receiver):
    """refund-bot, its callback URL pointing at `receiver`."""
    agent.callback_url = receiver.url()
    agent.save(update_fields=["callback_url"])
    return agent
