"""Agent-supplied content is text, never markup: every place a case's strings reach the inbox
and the case page, a hostile string comes out escaped. And the pages carry a CSP that forbids
inline script, with nothing inline for it to forbid."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from escalation import transitions
from escalation.audit import Actor
from tests.factories import make_case
from tests.web.helpers import case_url, hx, text

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
SVG = '"><svg onload=alert(1)>'
JS_URL = "javascript:alert(1)"
HOSTILE = f"{SCRIPT} {IMG} {SVG} {JS_URL}"


@pytest.fixture
def hostile_case(agent, refunds, as_agent):
    case = make_case(
        agent=agent,
        queue=refunds,
        summary=HOSTILE,
        external_id=HOSTILE,
        context={
            HOSTILE: HOSTILE,
            "conversation": [
                {"role": HOSTILE, "text": HOSTILE},
                {"role": "customer", "text": JS_URL},
            ],
            "records": {HOSTILE: [HOSTILE, {"href": JS_URL, "url": JS_URL}]},
            "letter": HOSTILE * 20,  # long enough to be folded
        },
        proposed_action={HOSTILE: HOSTILE, "href": JS_URL, "nested": {HOSTILE: [HOSTILE]}},
        metadata={HOSTILE: HOSTILE, "link": JS_URL},
    )
    transitions.append_context(
        actor=as_agent, case_id=case.pk, note=HOSTILE, data={HOSTILE: HOSTILE, "link": JS_URL}
    )
    return case


class _Tags(HTMLParser):
    """Every element and attribute as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def assert_escaped(html: str) -> None:
    assert "<script>alert(1)" not in html
    assert "<img src=x onerror" not in html
    assert "<svg onload" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;svg onload=alert(1)&gt;" in html
    assert not re.search(r"""(href|src|action|formaction)\s*=\s*["']?\s*javascript:""", html, re.I)
    tags = _Tags(html).tags
    assert not [tag for tag, _ in tags if tag in ("img", "svg", "iframe", "object")]
    for _, attrs in tags:
        for name in ("href", "src", "action", "formaction", "hx-get", "hx-post"):
            assert not attrs.get(name, "").strip().lower().startswith("javascript:")


def assert_no_inline_code(html: str) -> None:
    parsed = _Tags(html)
    for tag, attrs in parsed.tags:
        assert tag != "style", "a <style> element"
        if tag == "script":
            assert attrs.get("src"), f"an inline <script {attrs}>"
        for name in attrs:
            assert name != "style", f"a style= attribute on <{tag}>"
            assert not name.startswith("on"), f"an inline {name}= handler on <{tag}>"
            assert not name.startswith("hx-on"), f"an {name} attribute on <{tag}>"
    for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S | re.I):
        assert not body.strip(), "a script element with inline code"


def assert_strict_csp(response) -> None:
    policy = response["Content-Security-Policy"]
    directives = dict(
        (part.split(" ", 1) + [""])[:2] for part in (p.strip() for p in policy.split(";")) if part
    )
    assert directives["script-src"].split() == ["'self'"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "'self'" in directives.get("style-src", "")


def test_the_inbox_escapes_agent_content(client, alice, hostile_case):
    client.force_login(alice)

    response = client.get("/inbox/")

    assert response.status_code == 200
    html = text(response)
    assert html.count("&lt;script&gt;alert(1)") >= 2  # summary and external id
    assert_escaped(html)
    assert_strict_csp(response)
    assert_no_inline_code(html)


def test_the_inbox_fragment_escapes_agent_content(client, alice, hostile_case):
    client.force_login(alice)

    response = client.get("/inbox/", headers=hx("case-list"))

    assert response.status_code == 200
    assert "<html" not in text(response)
    assert_escaped(text(response))
    assert_no_inline_code(text(response))


def test_a_search_for_a_hostile_string_is_echoed_escaped(client, alice, hostile_case):
    client.force_login(alice)

    response = client.get("/inbox/", {"q": SCRIPT, "agent": IMG})

    assert response.status_code == 200
    html = text(response)
    assert "<script>alert(1)" not in html and "<img src=x onerror" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert_no_inline_code(html)


def test_the_case_page_escapes_agent_content_for_a_reader(client, bob, as_alice, hostile_case):
    transitions.claim(actor=as_alice, case_id=hostile_case.pk)
    client.force_login(bob)

    response = client.get(case_url(hostile_case))

    assert response.status_code == 200
    html = text(response)
    assert_escaped(html)
    # the transcript's hostile role is text, and not a class name either
    assert '<li class="turn turn-other"><span class="role">&lt;script&gt;' in html
    assert '<details class="fold">' in html
    assert_strict_csp(response)
    assert_no_inline_code(html)


def test_the_case_page_escapes_agent_content_in_the_decision_form(client, alice, hostile_case):
    transitions.claim(actor=Actor.for_user(alice), case_id=hostile_case.pk)
    client.force_login(alice)

    response = client.get(case_url(hostile_case))

    assert response.status_code == 200
    html = text(response)
    assert ">Approve</button>" in html
    editor = html.split('<textarea name="final_action"', 1)[1].split("</textarea>", 1)[0]
    assert "&lt;script&gt;" in editor and "<script" not in editor
    assert_escaped(html)
    assert_no_inline_code(html)


def test_a_resolved_case_page_escapes_the_final_action(client, alice, hostile_case):
    held = transitions.claim(actor=Actor.for_user(alice), case_id=hostile_case.pk)
    transitions.resolve(
        actor=Actor.for_user(alice),
        case_id=hostile_case.pk,
        claim_token=held.claim_token,
        decision="approve",
        note=HOSTILE,
    )
    client.force_login(alice)

    response = client.get(case_url(hostile_case))

    assert response.status_code == 200
    html = text(response)
    decision = html.split("<h2>Decision</h2>", 1)[1].split("</section>", 1)[0]
    assert "&lt;script&gt;" in decision
    assert_escaped(html)
    assert_no_inline_code(html)


def test_the_updates_fragment_escapes_agent_content(client, alice, hostile_case):
    client.force_login(alice)

    response = client.get(case_url(hostile_case, "updates/"), headers=hx("updates"))

    assert response.status_code == 200
    html = text(response)
    assert "<html" not in html
    assert_escaped(html)


def test_a_refusal_message_carries_no_markup(client, alice, bob, hostile_case):
    transitions.claim(actor=Actor.for_user(bob), case_id=hostile_case.pk)
    client.force_login(alice)

    response = client.post(case_url(hostile_case, "claim/"), follow=True)

    assert response.status_code == 200
    assert "already claimed by bob" in text(response)
    assert_escaped(text(response))


def test_the_base_template_has_no_inline_script_style_or_hx_on():
    from django.conf import settings

    base = (settings.BASE_DIR / "templates" / "base.html").read_text()

    assert_no_inline_code(base)
    config = re.search(r"name=\"htmx-config\" content='([^']*)'", base).group(1)
    assert '"allowEval": false' in config
    assert '"includeIndicatorStyles": false' in config


def test_the_login_page_has_the_same_strict_csp(client):
    response = client.get("/accounts/login/")

    assert response.status_code == 200
    assert_strict_csp(response)
    assert_no_inline_code(text(response))
