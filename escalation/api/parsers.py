"""Strict JSON: what PostgreSQL's jsonb or a later reader would choke on is a 400 here, before
anything reaches the database."""

from __future__ import annotations

import json
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32
MAX_INT = 2**63 - 1


class BadJSON(ValueError):
    pass


def _reject_constant(name: str):
    raise BadJSON(f"{name} is not valid JSON")


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise BadJSON("strings must not contain \\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadJSON("strings must not contain lone surrogates") from None


_INFINITIES = (float("inf"), float("-inf"))


def check_value(value, *, strings: bool = True) -> None:
    """Walk the parsed value without recursion: depth, numbers (an integer past 64 bits, a
    number too large for a float) and, with `strings`, NUL bytes and lone surrogates. Numbers
    are checked here rather than by json's parse_int and parse_float hooks, which cost a Python
    call per number: a batch of 100 creates holds thousands."""
    stack: list[tuple[object, int]] = [((value,), 0)]  # the value, in a holder of depth 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadJSON(f"JSON is nested deeper than {MAX_DEPTH} levels")
        if type(node) is dict:
            if strings:
                for key in node:
                    _check_string(key)
            children = node.values()
        else:
            children = node
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is int:
                if not -MAX_INT <= child <= MAX_INT:
                    raise BadJSON(f"number {str(child)[:40]} is too large")
            elif kind is float:
                if child in _INFINITIES:
                    raise BadJSON("a number is too large for a float")
            elif strings and kind is str:
                _check_string(child)


# What can put a NUL or a lone surrogate into a parsed string: its \u escape, or the character
# itself (json decodes bytes with surrogatepass). A text without any needs no string checked,
# which was most of the time a create's body took to check.
_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])|[\x00\ud800-\udfff]")


def loads_strict(raw: bytes | str):
    try:
        text = (
            raw.decode(json.detect_encoding(raw), "surrogatepass")
            if isinstance(raw, bytes)
            else raw
        )
        value = json.loads(text, parse_constant=_reject_constant)
    except BadJSON:
        raise
    except RecursionError:
        raise BadJSON(f"JSON is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJSON(f"malformed JSON: {exc}") from None
    check_value(value, strings=_SUSPECT.search(text) is not None)
    return value


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        from escalation.api.errors import MAX_BODY_BYTES, ApiError

        # Read one byte past the limit: a chunked body has no Content-Length to check up front.
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", "the request body is over 1 MiB")
        # (An empty body never gets here: DRF reads it as no data, i.e. an empty object.)
        try:
            return loads_strict(raw)
        except BadJSON as exc:
            raise ParseError(str(exc)) from None
