"""Rendering agent-supplied content for people. Everything here builds HTML with format_html /
conditional_escape: an agent string is always text, never markup, a URL or an attribute."""

from __future__ import annotations

import json
from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

FOLD_AT = 280  # characters shown before a long string folds
OPEN_LEVELS = 2  # JSON tree levels open by default


def _fold(text: str) -> SafeString:
    if len(text) <= FOLD_AT:
        return format_html('<span class="json-str">{}</span>', text)
    return format_html(
        '<details class="fold"><summary><span class="json-str">{}</span>… '
        '<span class="muted">({} characters)</span></summary>'
        '<span class="json-str">{}</span></details>',
        text[:FOLD_AT],
        len(text),
        text,
    )


def _scalar(value) -> SafeString:
    if isinstance(value, str):
        return _fold(value)
    if value is None:
        return mark_safe('<span class="json-null">null</span>')
    if isinstance(value, bool):
        return format_html('<span class="json-bool">{}</span>', "true" if value else "false")
    return format_html('<span class="json-num">{}</span>', json.dumps(value))


def _tree(value, depth: int) -> SafeString:
    # The API refuses nesting deeper than 32 levels, so this recursion is bounded.
    if isinstance(value, dict):
        if not value:
            return mark_safe('<span class="json-empty">{}</span>')
        items = format_html_join(
            "",
            '<li><span class="json-key">{}</span>: {}</li>',
            ((key, _tree(child, depth + 1)) for key, child in value.items()),
        )
        label = f"{{…}} {len(value)} keys"
    elif isinstance(value, list):
        if not value:
            return mark_safe('<span class="json-empty">[]</span>')
        items = format_html_join(
            "",
            '<li><span class="json-key">{}</span>: {}</li>',
            ((index, _tree(child, depth + 1)) for index, child in enumerate(value)),
        )
        label = f"[…] {len(value)} items"
    else:
        return _scalar(value)
    return format_html(
        '<details class="json"{}><summary>{}</summary><ul>{}</ul></details>',
        mark_safe(" open") if depth < OPEN_LEVELS else "",
        label,
        items,
    )


@register.simple_tag
def json_tree(value) -> SafeString:
    return _tree(value, 0)


@register.simple_tag
def json_pretty(value) -> str:
    """For the Modify editor: indented JSON text (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False) if value is not None else ""


def _is_transcript(value) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(turn, dict) and "text" in turn for turn in value)
    )


@register.simple_tag
def render_context(context) -> SafeString:
    """A conversation (a list of {role, text}) reads as a transcript; every other key is a
    collapsible JSON tree."""
    if not isinstance(context, dict):
        return _tree(context, 0)
    parts = []
    # Transcripts first: they are what a person reads first (jsonb does not keep key order).
    items = sorted(context.items(), key=lambda item: not _is_transcript(item[1]))
    for key, value in items:
        if _is_transcript(value):
            turns = format_html_join(
                "",
                '<li class="turn turn-{}"><span class="role">{}</span> {}</li>',
                (
                    (
                        _role_class(turn.get("role")),
                        str(turn.get("role", "")),
                        _fold(str(turn.get("text", ""))),
                    )
                    for turn in value
                ),
            )
            parts.append(
                format_html(
                    '<section class="context-part"><h4>{}</h4><ol class="transcript">{}</ol>'
                    "</section>",
                    key,
                    turns,
                )
            )
        else:
            parts.append(
                format_html(
                    '<section class="context-part"><h4>{}</h4>{}</section>', key, _tree(value, 1)
                )
            )
    return format_html_join("", "{}", ((part,) for part in parts))


def _role_class(role) -> str:
    # Only known words become part of a class name; anything else is "other".
    return role if role in {"customer", "agent", "assistant", "user", "system", "tool"} else "other"


@register.simple_tag
def sla_clock(case, now: datetime | None = None) -> SafeString:
    """ "due in 12m" / "breached 3m ago", with the SLA state word people look for."""
    now = now or timezone.now()
    if case.next_due_at is None:
        return mark_safe("")
    state = case.sla_state(now)
    delta = (case.next_due_at - now).total_seconds()
    which = "claim" if case.status == "open" else "resolve"
    if delta <= 0:
        text = f"{which} target missed {_duration(-delta)} ago"
    else:
        text = f"{which} due in {_duration(delta)}"
    word = {"breached": "Breached", "at_risk": "At risk"}.get(state, "")
    return format_html(
        '<span class="sla sla-{}" title="{}">{}{}</span>',
        state,
        case.next_due_at.strftime("%Y-%m-%d %H:%M UTC"),
        format_html('<strong class="sla-word">{}</strong> ', word) if word else "",
        text,
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


@register.filter
def percent(value) -> str:
    try:
        return f"{float(value) * 100:.0f}%"
    except (TypeError, ValueError):
        return ""


@register.filter
def capped(count: int) -> str:
    """Counts past the inbox's cap read "1000+"."""
    from escalation.queries import COUNT_CAP

    return f"{COUNT_CAP}+" if count > COUNT_CAP else str(count)
