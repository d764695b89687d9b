"""Routing rules: checking a queue's rules when it is saved, and evaluating them against a case.

Pure functions of plain data: the routing task builds a dict view of the case (see CASE_FIELDS,
plus "metadata") and applies the returned changes itself, through `transitions`.
"""

from __future__ import annotations

import json
import re
from typing import Any

OPERATORS = ("eq", "ne", "gt", "lt", "in", "contains")
CASE_FIELDS = (
    "priority",
    "confidence",
    "reason",
    "summary",
    "external_id",
    "agent",
    "agent_version",
    "queue",
)
PRIORITIES = ("urgent", "high", "normal", "low")
MAX_RULES = 100

SLUG_RE = re.compile(r"[-a-zA-Z0-9_]+")
RULE_KEYS = frozenset({"when", "then", "name"})
WHEN_KEYS = frozenset({"field", "op", "value"})
THEN_KEYS = frozenset({"priority", "queue"})


class RuleError(ValueError):
    """Routing rules that cannot be used; the message names the rule's index, e.g. rules[2]."""


def _is_number(value: object) -> bool:
    # bool is a subclass of int in Python, but true/false are not numbers in JSON.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_json(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _check_field(where: str, field: object) -> None:
    if not isinstance(field, str):
        raise RuleError(f"{where}.when.field must be a string")
    if field in CASE_FIELDS:
        return
    prefix, _, path = field.partition(".")
    if prefix == "metadata" and path and all(path.split(".")):
        return
    raise RuleError(
        f"{where}.when.field {field!r} must be one of {', '.join(CASE_FIELDS)} "
        "or metadata.<dotted.path>"
    )


def _check_rule(where: str, rule: object) -> None:
    if not isinstance(rule, dict):
        raise RuleError(f"{where} must be an object with when and then")
    extra = sorted(set(rule) - RULE_KEYS, key=str)
    if extra:
        raise RuleError(f"{where}: key {extra[0]!r} is not allowed")
    if "name" in rule and not isinstance(rule["name"], str):
        raise RuleError(f"{where}.name must be a string")

    when = rule.get("when")
    if not isinstance(when, dict) or set(when) != WHEN_KEYS:
        raise RuleError(f"{where}.when must be an object with exactly field, op and value")
    _check_field(where, when["field"])
    op, value = when["op"], when["value"]
    if op not in OPERATORS:
        raise RuleError(f"{where}.when.op must be one of {', '.join(OPERATORS)}")
    if not _is_json(value):
        raise RuleError(f"{where}.when.value must be a JSON value")
    if op == "in" and not isinstance(value, list):
        raise RuleError(f"{where}.when.value must be a list for op in")
    if op in ("gt", "lt") and not _is_number(value):
        raise RuleError(f"{where}.when.value must be a number for op {op}")

    then = rule.get("then")
    if not isinstance(then, dict) or not then:
        raise RuleError(f"{where}.then must be a non-empty object")
    extra = sorted(set(then) - THEN_KEYS, key=str)
    if extra:
        raise RuleError(f"{where}.then: key {extra[0]!r} is not allowed (only priority, queue)")
    if "priority" in then and then["priority"] not in PRIORITIES:
        raise RuleError(f"{where}.then.priority must be one of {', '.join(PRIORITIES)}")
    if "queue" in then and not (
        isinstance(then["queue"], str) and SLUG_RE.fullmatch(then["queue"])
    ):
        raise RuleError(f"{where}.then.queue must be a queue slug")


def check_rules(rules: object) -> list[dict]:
    """Return rules if valid, else raise RuleError naming the rule index (rules[i]).

    rules: a list (max 100) of {"when": {"field", "op", "value"}, "then": {...}, "name"?}; field is
    one of CASE_FIELDS or "metadata.<dotted.path>"; op one of OPERATORS; value JSON ("in" needs a
    list, "gt"/"lt" a number); then is non-empty with only "priority" (urgent/high/normal/low)
    and/or "queue" (a slug).
    """
    if not isinstance(rules, list):
        raise RuleError("routing rules must be a list")
    if len(rules) > MAX_RULES:
        raise RuleError(f"routing rules: at most {MAX_RULES} rules are allowed, got {len(rules)}")
    for index, rule in enumerate(rules):
        _check_rule(f"rules[{index}]", rule)
    return rules


def field_value(case_view: dict, field: str) -> tuple[bool, object]:
    """(found, value): a top-level key of case_view, or metadata.a.b walking dicts in metadata."""
    prefix, dot, path = field.partition(".")
    if not dot:
        return (field in case_view, case_view.get(field))
    if prefix != "metadata":
        return (False, None)
    current: Any = case_view.get("metadata")
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return (False, None)
        current = current[part]
    return (True, current)


def _json_equal(a: object, b: object) -> bool:
    # Python says True == 1 and 1 == 1.0; JSON says the first pair differ and the second do not.
    if _is_number(a) and _is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[key], b[key]) for key in a)
    return a == b


def _matches(op: str, actual: object, expected: object) -> bool:
    if op == "eq":
        return _json_equal(actual, expected)
    if op == "ne":
        return not _json_equal(actual, expected)
    if op in ("gt", "lt"):
        if not (_is_number(actual) and _is_number(expected)):
            return False
        return actual > expected if op == "gt" else actual < expected  # type: ignore[operator]
    if op == "in":
        return isinstance(expected, list) and any(_json_equal(actual, item) for item in expected)
    if op == "contains":
        if isinstance(actual, list):
            return any(_json_equal(item, expected) for item in actual)
        return isinstance(actual, str) and isinstance(expected, str) and expected in actual
    return False


def evaluate(rules: list[dict], case_view: dict) -> tuple[dict, list[int]]:
    """Apply every matching (checked) rule in order; later matches override earlier ones by key.

    Returns (changes, matched_rule_indexes), e.g. ({"priority": "high"}, [0, 3]). A missing field
    never matches (not even ne). gt/lt compare numbers only (bools are not numbers). eq/ne compare
    JSON values exactly. in: the field's value is in the rule's list. contains: the field is a list
    containing the value, or a string containing the value (a string).
    """
    changes: dict[str, Any] = {}
    matched: list[int] = []
    for index, rule in enumerate(rules):
        when = rule["when"]
        found, actual = field_value(case_view, when["field"])
        if found and _matches(when["op"], actual, when["value"]):
            changes.update(rule["then"])
            matched.append(index)
    return changes, matched
