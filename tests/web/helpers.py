"""Reading the reviewer UI's HTML the way a person reads the page: rows, buttons, messages."""

from __future__ import annotations

import html as html_lib
import json
import re

from django.contrib.messages import get_messages

HTMX = {"HX-Request": "true"}


def hx(target: str) -> dict[str, str]:
    """Headers htmx sends for a request whose target element has this id."""
    return {"HX-Request": "true", "HX-Target": target}


def text(response) -> str:
    return response.content.decode()


def case_url(case, action: str = "") -> str:
    return f"/cases/{case.pk}/{action}"


def row_ids(response) -> list[str]:
    """Case ids of the inbox rows, in the order shown."""
    return re.findall(r'<tr class="case-row" data-href="/cases/([0-9a-f-]+)/"', text(response))


def rows_by_id(response) -> dict[str, str]:
    """Each inbox row's HTML, by case id."""
    parts = text(response).split('<tr class="case-row" data-href="/cases/')[1:]
    return {part.split("/", 1)[0]: part.split("</tr>", 1)[0] for part in parts}


def buttons(response) -> list[str]:
    """Visible names of the page's buttons."""
    names = re.findall(r"<button\b[^>]*>(.*?)</button>", text(response), re.S)
    return [html_lib.unescape(re.sub(r"<[^>]+>", "", name)).strip() for name in names]


def shown_messages(response) -> list[str]:
    """The flash messages rendered in the page."""
    found = re.findall(r'<p class="message[^"]*">(.*?)</p>', text(response), re.S)
    return [html_lib.unescape(m).strip() for m in found]


def flashed(response) -> list[str]:
    """Messages queued by a request that answered with a redirect."""
    return [str(m) for m in get_messages(response.wsgi_request)]


def next_page_link(response) -> str | None:
    match = re.search(r'<a href="\?([^"]*)">Next page</a>', text(response))
    return "/inbox/?" + html_lib.unescape(match.group(1)) if match else None


def poll_version(response) -> str:
    """The `since=` token the inbox list polls with."""
    match = re.search(r'hx-get="/inbox/\?[^"]*since=([^"&]+)"', text(response))
    assert match, "the inbox list carries no poll token"
    return html_lib.unescape(match.group(1))


def label_block(response, name: str) -> str:
    """The HTML of one generated label field (its label, input, help and errors)."""
    # Single fields sit in a <div class="label-field">, multi-choice ones in a <fieldset>.
    for block in text(response).split('class="label-field">')[1:]:
        head = block.split("</label>", 1)[0] + block.split("</label>", 1)[-1][:200]
        if f'for="id_label_{name}"' in head or f'id="id_label_{name}"' in head:
            return block.split('<label for="id_note"', 1)[0]
    raise AssertionError(f"no label field {name!r} in the page")


def htmx_config(response) -> dict:
    match = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", text(response))
    return json.loads(html_lib.unescape(match.group(1))) if match else {}
