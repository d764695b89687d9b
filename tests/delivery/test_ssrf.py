"""The SSRF guard: at save time (the validator, the API) and again at every delivery, which
then connects to the very address that passed the check. Forbidden destinations are refused
however they are written; at delivery they make the delivery dead at once, with no connection
made."""

from __future__ import annotations

import json
import socket

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from escalation import delivery, ssrf
from escalation.models import Agent, AgentKey, DeliveryStatus, Escalation
from escalation.ssrf import DestinationRefused, check_callback_url, validate_callback_url
from tests.delivery.helpers import (
    attempt_log,
    audit_data,
    delivery_of,
    delivery_verbs,
    fresh,
    resolve,
)
from tests.factories import make_case

pytestmark = pytest.mark.django_db

FORBIDDEN = [
    pytest.param("https://10.0.0.1/", "private", id="private-10"),
    pytest.param("https://192.168.1.20/hook", "private", id="private-192-168"),
    pytest.param("https://169.254.169.254/latest/meta-data", "link-local", id="metadata"),
    pytest.param("https://[::ffff:127.0.0.1]/", "loopback", id="ipv4-mapped-loopback"),
    pytest.param("https://[::ffff:10.0.0.1]/", "private", id="ipv4-mapped-private"),
    pytest.param("https://2130706433/", "loopback", id="decimal-loopback"),
    pytest.param("https://0177.0.0.1/", "loopback", id="octal-loopback"),
    pytest.param("https://0x7f.1/", "loopback", id="hex-short-loopback"),
    pytest.param("https://127.1/", "loopback", id="short-loopback"),
    pytest.param("https://127.0.0.1/", "loopback", id="loopback-not-allowed"),
    pytest.param("https://localhost/", "loopback", id="localhost"),
    pytest.param("https://[::1]/", "loopback", id="ipv6-loopback"),
    pytest.param("https://[fe80::1]/", "link-local", id="ipv6-link-local"),
    pytest.param("https://[fd00::1]/", "private", id="ipv6-unique-local"),
    pytest.param("https://0.0.0.0/", "reserved", id="unspecified"),
    pytest.param("https://224.0.0.1/", "multicast", id="multicast"),
    pytest.param("https://100.64.0.1/", "reserved", id="carrier-grade-nat"),
    pytest.param("http://example.com/", "https", id="http-not-allowed"),
    pytest.param("https://user:pw@example.com/", "credentials", id="credentials"),
    pytest.param("ftp://example.com/", "http", id="not-http"),
]


@pytest.fixture
def no_allowed_hosts(settings):
    settings.HANDOFF_WEBHOOK_ALLOWED_HOSTS = []
    return settings


@pytest.fixture
def fake_dns(monkeypatch):
    """Names under .test resolve to what the test says (each lookup counted); the rest as
    usual. Patched where escalation.ssrf sees it (the socket module)."""
    real = socket.getaddrinfo
    answers: dict[str, list] = {}
    lookups: dict[str, int] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".test"):
            lookups[host] = lookups.get(host, 0) + 1
            script = answers.get(host)
            if not script:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            addresses = script.pop(0) if len(script) > 1 else script[0]
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (address, port) if ":" not in address else (address, port, 0, 0),
                )
                for address in addresses
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", getaddrinfo)

    class FakeDns:
        def answer(self, host: str, *lookups_in_order: list[str]) -> None:
            """Each lookup of `host` takes the next list of addresses (the last repeats)."""
            answers[host] = [list(addresses) for addresses in lookups_in_order]

        def lookups(self, host: str) -> int:
            return lookups.get(host, 0)

    return FakeDns()


@pytest.fixture
def no_connection(monkeypatch):
    """Fail the test if a delivery tries to connect anywhere."""
    calls = []

    def refuse(destination, item):
        calls.append(destination)
        return None, "connected although the destination was refused"

    monkeypatch.setattr(delivery, "_post", refuse)
    return calls


# --- at save time ------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), FORBIDDEN)
def test_the_guard_refuses_forbidden_destinations(no_allowed_hosts, url, reason):
    with pytest.raises(DestinationRefused, match=reason):
        check_callback_url(url)
    with pytest.raises(ValidationError):
        validate_callback_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34/hook",
        "https://93.184.216.34:8443/hook?agent=refund-bot",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
    ],
)
def test_the_guard_accepts_a_public_literal_address(no_allowed_hosts, url):
    check_callback_url(url)
    validate_callback_url(url)


def test_an_allowed_host_may_be_called_over_http_even_on_a_private_address(settings, fake_dns):
    settings.HANDOFF_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1", "hooks.internal.test"]
    fake_dns.answer("hooks.internal.test", ["10.1.2.3"])
    for url in (
        "http://127.0.0.1:9000/hook",
        "https://127.0.0.1/hook",
        "http://hooks.internal.test/hook",
        "http://HOOKS.internal.test:8080/hook",
    ):
        check_callback_url(url)
        validate_callback_url(url)
    # Only the listed host: the same address written otherwise is still refused.
    for url in ("http://localhost/hook", "https://[::ffff:127.0.0.1]/", "https://2130706433/"):
        with pytest.raises(DestinationRefused):
            check_callback_url(url)


def test_a_name_resolving_to_a_private_address_is_refused(no_allowed_hosts, fake_dns):
    fake_dns.answer("evil.test", ["10.0.0.1"])
    fake_dns.answer("mixed.test", ["93.184.216.34", "169.254.169.254"])
    fake_dns.answer("public.test", ["93.184.216.34"])

    with pytest.raises(DestinationRefused, match="private"):
        check_callback_url("https://evil.test/hook")
    with pytest.raises(DestinationRefused, match="link-local"):
        check_callback_url("https://mixed.test/hook")
    with pytest.raises(ValidationError):
        validate_callback_url("https://evil.test/hook")
    check_callback_url("https://public.test/hook")


# --- through the API -----------------------------------------------------------------------------


def _api(agent) -> Client:
    _, raw = AgentKey.generate(agent)
    return Client(headers={"Authorization": f"Bearer {raw}"})


def _post_case(client: Client, callback_url: str):
    body = {
        "queue": "refunds",
        "summary": "Refund of 1,240 EUR exceeds the auto-approve limit",
        "confidence": 0.42,
        "context": {"conversation": []},
        "callback_url": callback_url,
    }
    return client.post(
        "/api/v1/escalations", data=json.dumps(body), content_type="application/json"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:127.0.0.1]/",
        "https://2130706433/",
        "https://0177.0.0.1/",
        "https://127.0.0.1/",
        "https://[::1]/",
        "http://example.com/",
        "https://user:pw@example.com/",
    ],
)
def test_the_api_refuses_a_forbidden_callback_url_naming_the_field(
    no_allowed_hosts, agent, refunds, url
):
    response = _post_case(_api(agent), url)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "callback_url" in error["fields"], error
    assert not Escalation.objects.exists()


def test_the_api_accepts_a_public_address_and_an_allowed_host(settings, agent, refunds):
    client = _api(agent)
    settings.HANDOFF_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]

    public = _post_case(client, "https://93.184.216.34/hook")
    allowed = _post_case(client, "http://127.0.0.1:9000/hook")

    assert public.status_code == 201, public.content
    assert allowed.status_code == 201, allowed.content
    assert set(Escalation.objects.values_list("callback_url", flat=True)) == {
        "https://93.184.216.34/hook",
        "http://127.0.0.1:9000/hook",
    }


def test_the_api_refuses_a_name_that_resolves_to_a_private_address(
    no_allowed_hosts, fake_dns, agent, refunds
):
    fake_dns.answer("evil.test", ["10.0.0.1"])

    response = _post_case(_api(agent), "https://evil.test/hook")

    assert response.status_code == 400, response.content
    assert "callback_url" in response.json()["error"]["fields"]


# --- at delivery time ----------------------------------------------------------------------------


def _deliver_to(url: str, agent, queue, reviewer):
    """A resolved case whose agent's callback URL was set to `url` behind the validator's back."""
    Agent.objects.filter(pk=agent.pk).update(callback_url=url)
    agent.refresh_from_db()
    case = make_case(agent=agent, queue=queue)
    resolve(case, reviewer)
    item = delivery_of(case)
    assert item.url == url
    return case, item


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("https://10.0.0.1/", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://127.0.0.1:{port}/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]:{port}/hook", "loopback"),
        ("https://2130706433:{port}/hook", "loopback"),
        ("https://0177.0.0.1:{port}/hook", "loopback"),
        ("https://localhost:{port}/hook", "loopback"),
        ("https://[::1]:{port}/hook", "loopback"),
        ("http://127.0.0.1:{port}/hook", "https"),
        ("https://user:pw@93.184.216.34/hook", "credentials"),
    ],
)
def test_a_forbidden_destination_at_delivery_is_dead_at_once_without_connecting(
    no_allowed_hosts, no_connection, agent, refunds, alice, receiver, path, reason
):
    case, item = _deliver_to(path.format(port=receiver.port), agent, refunds, alice)

    assert delivery.attempt(item.pk) == "dead"

    dead = fresh(item)
    assert dead.status == DeliveryStatus.DEAD and dead.attempts == 1
    assert reason in dead.last_error, dead.last_error
    assert dead.last_status_code is None
    [(number, status_code, error)] = attempt_log(item)
    assert number == 1 and status_code is None and reason in error
    assert delivery_verbs(case) == ["delivery.failed", "delivery.dead"]
    [facts] = audit_data(case, "delivery.dead")
    assert reason in facts["reason"]
    assert no_connection == []
    assert receiver.connections == 0 and receiver.received() == []


def test_the_connection_goes_to_the_address_that_passed_the_check(
    settings, fake_dns, agent, refunds, alice, receiver
):
    # An allowed name resolving to 127.0.0.1 on the first lookup; any second lookup (a
    # rebinding attacker's chance) would answer a private address nothing listens on.
    settings.HANDOFF_WEBHOOK_ALLOWED_HOSTS = ["hooks.internal.test"]
    fake_dns.answer("hooks.internal.test", ["127.0.0.1"], ["10.255.255.1"])
    url = f"http://hooks.internal.test:{receiver.port}/hook"
    case, item = _deliver_to(url, agent, refunds, alice)

    assert delivery.attempt(item.pk) == "succeeded"

    assert fake_dns.lookups("hooks.internal.test") == 1
    [request] = receiver.received()
    assert request.headers["host"] == f"hooks.internal.test:{receiver.port}"
    assert request.path == "/hook"
    request.verify(agent.webhook_secret)


def test_a_name_that_resolves_to_a_private_address_at_delivery_is_refused(
    no_allowed_hosts, fake_dns, no_connection, agent, refunds, alice
):
    # Public when the URL was saved, private when the delivery runs (DNS rebinding).
    fake_dns.answer("rebind.test", ["93.184.216.34"], ["10.0.0.1"])
    check_callback_url("https://rebind.test/hook")
    case, item = _deliver_to("https://rebind.test/hook", agent, refunds, alice)

    assert delivery.attempt(item.pk) == "dead"

    dead = fresh(item)
    assert "10.0.0.1" in dead.last_error and "private" in dead.last_error
    assert no_connection == []


def test_one_private_record_among_public_ones_is_refused_at_delivery(
    no_allowed_hosts, fake_dns, no_connection, agent, refunds, alice
):
    fake_dns.answer("mixed.test", ["93.184.216.34", "10.0.0.1"])
    case, item = _deliver_to("https://mixed.test/hook", agent, refunds, alice)

    assert delivery.attempt(item.pk) == "dead"
    assert "10.0.0.1" in fresh(item).last_error
    assert no_connection == []


def test_a_public_name_is_connected_to_at_its_vetted_address(
    no_allowed_hosts, fake_dns, no_connection, agent, refunds, alice
):
    fake_dns.answer("public.test", ["93.184.216.34"], ["10.0.0.1"])
    case, item = _deliver_to("https://public.test:8443/hook?x=1", agent, refunds, alice)

    delivery.attempt(item.pk)

    [destination] = no_connection
    assert destination.address == "93.184.216.34"
    assert destination.host == "public.test" and destination.port == 8443
    assert destination.scheme == "https" and destination.target == "/hook?x=1"
    assert fake_dns.lookups("public.test") == 1


def test_a_name_that_does_not_resolve_now_is_retried_not_dead(
    no_allowed_hosts, fake_dns, no_connection, agent, refunds, alice
):
    case, item = _deliver_to("https://gone.test/hook", agent, refunds, alice)

    assert delivery.attempt(item.pk) == "retry"

    after = fresh(item)
    assert after.status == DeliveryStatus.PENDING and "resolve" in after.last_error
    assert no_connection == []
