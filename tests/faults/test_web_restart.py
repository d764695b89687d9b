"""The web server restarted (a deploy: SIGTERM; a crash: SIGKILL) while agents hold long-polls
open on a case, which is decided during the restart."""

from __future__ import annotations

import threading
import time

import pytest

from escalation import transitions
from tests.factories import make_case
from tests.support import http_json

pytestmark = pytest.mark.django_db(transaction=True)

WAITERS, WAIT = 8, 6
SLACK = 2.0  # seconds past `wait` that an answer may take (start-up, a slow machine)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_long_polls_open_across_a_web_restart_get_an_answer_or_a_clean_retry(
    stack, agent, refunds, api_key, as_alice, signal_name
):
    """Fault: the web server stopped (SIGTERM, then SIGKILL) while 8 agents long-poll
    (wait=6) on one case; a new server starts on the same port; the case is decided
    meanwhile.
    Invariant: no request hangs past its wait (+2 s); each ends in an answer (202 still
    open, 200 decided) or a refused or reset connection that the agent simply retries; every
    agent ends with the decision (200, resolved) within two waits."""
    web = stack.web(graceful_timeout=WAIT + 5)
    case = make_case(agent=agent, queue=refunds)
    token = transitions.claim(actor=as_alice, case_id=case.pk).claim_token
    path = f"/api/v1/escalations/{case.pk}/resolution?wait={WAIT}"
    journeys: list[list[tuple[str, float]]] = [[] for _ in range(WAITERS)]
    deadline = time.monotonic() + 2 * WAIT + 10

    def agent_waits(number: int) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status, body, _ = http_json(web.port, "GET", path, key=api_key, timeout=WAIT + 5)
                outcome = f"{status} {body.get('status')}"
            except OSError as exc:
                outcome = type(exc).__name__
            journeys[number].append((outcome, time.monotonic() - started))
            if outcome == "200 resolved":
                return
            if not outcome.startswith("202"):
                time.sleep(0.2)  # the agent's back-off before it retries

    agents = [threading.Thread(target=agent_waits, args=(n,)) for n in range(WAITERS)]
    for thread in agents:
        thread.start()
    time.sleep(1.0)  # every long-poll is waiting
    if signal_name == "SIGTERM":
        web.stop()  # graceful: in-flight requests may finish on the old server
    else:
        web.kill()
    web.start()
    transitions.resolve(actor=as_alice, case_id=case.pk, claim_token=token, decision="approve")
    for thread in agents:
        thread.join(timeout=2 * WAIT + 15)

    assert all(not thread.is_alive() for thread in agents)
    for journey in journeys:
        assert journey and journey[-1][0] == "200 resolved", journeys
        for outcome, took in journey:
            assert took <= WAIT + SLACK, journeys
            assert outcome.startswith(("200", "202")) or outcome in {
                "ConnectionRefusedError",
                "ConnectionResetError",
                "RemoteDisconnected",
                "BadStatusLine",
            }, journeys
    print(signal_name, [[outcome for outcome, _ in journey] for journey in journeys[:2]])
