from __future__ import annotations

import pytest

from escalation.routing import (
    CASE_FIELDS,
    RuleError,
    check_rules,
    evaluate,
    field_value,
)

CASE = {
    "priority": "normal",
    "confidence": 0.4,
    "reason": "low_confidence",
    "summary": "Refund request for a damaged parcel",
    "external_id": "ticket-17",
    "agent": "refund-bot",
    "agent_version": "2.1.0",
    "queue": "refunds",
    "metadata": {
        "tier": "gold",
        "amount": 250,
        "flagged": True,
        "tags": ["vip", "repeat"],
        "account": {"region": {"code": "EU"}, "age_days": 3},
        "nothing": None,
    },
}


def rule(field: object, op: str, value: object, **then: str) -> dict:
    return {
        "when": {"field": field, "op": op, "value": value},
        "then": then or {"priority": "high"},
    }


def matches(field: str, op: str, value: object, case: dict = CASE) -> bool:
    changes, matched = evaluate(check_rules([rule(field, op, value)]), case)
    assert bool(changes) == bool(matched)
    return matched == [0]


# field_value


def test_field_value_reads_top_level_case_fields() -> None:
    assert field_value(CASE, "priority") == (True, "normal")
    assert field_value(CASE, "confidence") == (True, 0.4)


def test_field_value_walks_dotted_metadata_paths() -> None:
    assert field_value(CASE, "metadata.tier") == (True, "gold")
    assert field_value(CASE, "metadata.account.region.code") == (True, "EU")
    assert field_value(CASE, "metadata.account.region") == (True, {"code": "EU"})


def test_field_value_finds_a_null_that_is_present() -> None:
    assert field_value(CASE, "metadata.nothing") == (True, None)


def test_field_value_reports_missing_fields_as_not_found() -> None:
    assert field_value(CASE, "metadata.colour") == (False, None)
    assert field_value(CASE, "metadata.account.region.code.more") == (False, None)
    assert field_value(CASE, "metadata.tags.0") == (False, None)
    assert field_value({"priority": "low"}, "metadata.tier") == (False, None)
    assert field_value({"metadata": None}, "metadata.tier") == (False, None)
    assert field_value({}, "priority") == (False, None)


# operators


def test_eq_matches_an_equal_value() -> None:
    assert matches("metadata.tier", "eq", "gold")
    assert matches("confidence", "eq", 0.4)
    assert matches("metadata.account", "eq", {"region": {"code": "EU"}, "age_days": 3})
    assert matches("metadata.tags", "eq", ["vip", "repeat"])
    assert matches("metadata.nothing", "eq", None)


def test_eq_does_not_match_a_different_value() -> None:
    assert not matches("metadata.tier", "eq", "silver")
    assert not matches("metadata.tier", "eq", "Gold")
    assert not matches("metadata.tags", "eq", ["repeat", "vip"])


def test_eq_treats_whole_floats_and_integers_as_the_same_number() -> None:
    assert matches("metadata.amount", "eq", 250.0)


def test_eq_never_confuses_booleans_with_numbers() -> None:
    assert not matches("metadata.flagged", "eq", 1)
    assert not matches("metadata.amount", "eq", True)
    assert not matches("metadata.tags", "eq", [True, "repeat"])
    assert matches("metadata.flagged", "eq", True)


def test_eq_does_not_confuse_strings_with_numbers() -> None:
    assert not matches("metadata.amount", "eq", "250")


def test_ne_matches_a_different_value() -> None:
    assert matches("metadata.tier", "ne", "silver")
    assert matches("metadata.flagged", "ne", 1)


def test_ne_does_not_match_an_equal_value() -> None:
    assert not matches("metadata.tier", "ne", "gold")
    assert not matches("metadata.amount", "ne", 250.0)


def test_gt_matches_a_larger_number() -> None:
    assert matches("metadata.amount", "gt", 100)
    assert matches("confidence", "gt", 0.3)


def test_gt_does_not_match_an_equal_or_smaller_number() -> None:
    assert not matches("metadata.amount", "gt", 250)
    assert not matches("metadata.amount", "gt", 1000)


def test_lt_matches_a_smaller_number() -> None:
    assert matches("confidence", "lt", 0.5)
    assert matches("metadata.account.age_days", "lt", 7)


def test_lt_does_not_match_an_equal_or_larger_number() -> None:
    assert not matches("confidence", "lt", 0.4)
    assert not matches("confidence", "lt", 0.1)


@pytest.mark.parametrize("op", ["gt", "lt"])
def test_gt_and_lt_never_match_a_field_that_is_not_a_number(op: str) -> None:
    assert not matches("metadata.flagged", op, 0)  # a boolean is not a number
    assert not matches("metadata.tier", op, 0)
    assert not matches("metadata.nothing", op, 0)
    assert not matches("metadata.tags", op, 0)
    assert not matches("metadata.amount", op, 0, case={"metadata": {"amount": "999"}})


def test_in_matches_a_value_in_the_list() -> None:
    assert matches("metadata.tier", "in", ["silver", "gold"])
    assert matches("reason", "in", ["policy", "low_confidence"])
    assert matches("metadata.amount", "in", [250.0])


def test_in_does_not_match_a_value_outside_the_list() -> None:
    assert not matches("metadata.tier", "in", ["silver", "bronze"])
    assert not matches("metadata.tier", "in", [])
    assert not matches("metadata.flagged", "in", [1, 0])


def test_contains_matches_a_list_holding_the_value() -> None:
    assert matches("metadata.tags", "contains", "vip")


def test_contains_matches_a_string_holding_the_substring() -> None:
    assert matches("summary", "contains", "damaged")


def test_contains_does_not_match_when_the_value_is_absent() -> None:
    assert not matches("metadata.tags", "contains", "new")
    assert not matches("summary", "contains", "Damaged")
    assert not matches("summary", "contains", 1)
    assert not matches("metadata.amount", "contains", 2)
    assert not matches("metadata.account", "contains", "region")
    assert not matches("metadata.tags", "contains", ["vip"])


def test_contains_does_not_confuse_booleans_with_numbers_in_a_list() -> None:
    case = {"metadata": {"flags": [True, "x"]}}
    assert not matches("metadata.flags", "contains", 1, case=case)
    assert matches("metadata.flags", "contains", True, case=case)


@pytest.mark.parametrize(
    ("op", "value"),
    [("eq", "x"), ("ne", "x"), ("gt", 0), ("lt", 0), ("in", ["x"]), ("contains", "x")],
)
def test_a_missing_field_never_matches_any_operator(op: str, value: object) -> None:
    assert not matches("metadata.colour", op, value)
    assert not matches("metadata.account.colour", op, value)
    assert not matches("agent_version", op, value, case={"metadata": {}})
    assert not matches("metadata.colour", op, value, case={"priority": "low"})


# evaluate: order and overrides


def test_no_rules_change_nothing() -> None:
    assert evaluate([], CASE) == ({}, [])


def test_a_priority_rule_and_a_queue_rule_both_apply() -> None:
    rules = [
        rule("metadata.tier", "eq", "gold", priority="high"),
        rule("reason", "eq", "low_confidence", queue="compliance"),
    ]
    assert evaluate(rules, CASE) == ({"priority": "high", "queue": "compliance"}, [0, 1])


def test_later_matches_override_earlier_ones_key_by_key() -> None:
    rules = [
        rule("metadata.tier", "eq", "gold", priority="high", queue="vip"),
        rule("metadata.amount", "gt", 1000, priority="low"),  # does not match
        rule("metadata.amount", "gt", 100, priority="urgent"),
    ]
    assert evaluate(rules, CASE) == ({"priority": "urgent", "queue": "vip"}, [0, 2])


def test_only_matching_rules_are_reported() -> None:
    rules = [
        rule("metadata.tier", "eq", "silver"),
        rule("metadata.colour", "ne", "red"),
        rule("summary", "contains", "parcel", queue="parcels"),
    ]
    assert evaluate(rules, CASE) == ({"queue": "parcels"}, [2])


def test_evaluate_does_not_change_the_rules_or_the_case() -> None:
    then = {"priority": "high"}
    rules = [{"when": {"field": "priority", "op": "eq", "value": "normal"}, "then": then}]
    changes, _ = evaluate(rules, CASE)
    changes["priority"] = "low"
    assert then == {"priority": "high"}
    assert CASE["priority"] == "normal"


# check_rules


def test_valid_rules_are_returned_unchanged() -> None:
    rules = [
        {"name": "Gold first", **rule("metadata.tier", "eq", "gold")},
        rule("confidence", "lt", 0.2, queue="second_look-2"),
        rule("metadata.a.b.c", "in", [1, "x", None]),
        rule("summary", "contains", "refund", priority="low", queue="refunds"),
        rule("external_id", "ne", None),
        rule("agent", "eq", {"any": ["json"]}),
    ]
    assert check_rules(rules) is rules


@pytest.mark.parametrize("field", CASE_FIELDS)
def test_every_case_field_may_be_used(field: str) -> None:
    check_rules([rule(field, "eq", "x")])


def test_an_empty_list_of_rules_is_valid() -> None:
    assert check_rules([]) == []


def test_one_hundred_rules_are_allowed_but_not_more() -> None:
    check_rules([rule("priority", "eq", "low")] * 100)
    with pytest.raises(RuleError, match="at most 100"):
        check_rules([rule("priority", "eq", "low")] * 101)


@pytest.mark.parametrize("rules", [None, {"when": {}}, "[]", 3])
def test_rules_that_are_not_a_list_are_refused(rules: object) -> None:
    with pytest.raises(RuleError, match="must be a list"):
        check_rules(rules)


GOOD = rule("priority", "eq", "low")


@pytest.mark.parametrize(
    ("bad", "names"),
    [
        ("rule", "must be an object"),
        ({"when": GOOD["when"]}, "then"),
        ({"then": GOOD["then"]}, "when"),
        ({**GOOD, "else": {}}, "'else'"),
        ({**GOOD, "name": 5}, "name must be a string"),
        ({**GOOD, "when": [1]}, "when must be an object"),
        ({**GOOD, "when": {"field": "priority", "op": "eq"}}, "exactly field, op and value"),
        (
            {**GOOD, "when": {"field": "priority", "op": "eq", "value": 1, "not": True}},
            "exactly field, op and value",
        ),
        (rule(3, "eq", 1), "field must be a string"),
        (rule("context", "eq", 1), "'context'"),
        (rule("metadata", "eq", 1), "'metadata'"),
        (rule("metadata.", "eq", 1), "metadata.<dotted.path>"),
        (rule("metadata..tier", "eq", 1), "metadata.<dotted.path>"),
        (rule("metadata.tier.", "eq", 1), "metadata.<dotted.path>"),
        (rule("context.x", "eq", 1), "'context.x'"),
        (rule("priority", "is", 1), "op must be one of eq, ne, gt, lt, in, contains"),
        (rule("priority", "EQ", 1), "op must be one of"),
        (rule("priority", "eq", {1, 2}), "value must be a JSON value"),
        (rule("priority", "eq", float("nan")), "value must be a JSON value"),
        (rule("priority", "in", "gold"), "must be a list for op in"),
        (rule("priority", "in", None), "must be a list for op in"),
        (rule("confidence", "gt", "0.5"), "must be a number for op gt"),
        (rule("confidence", "lt", True), "must be a number for op lt"),
        (rule("confidence", "lt", None), "must be a number for op lt"),
        ({**GOOD, "then": {}}, "then must be a non-empty object"),
        ({**GOOD, "then": "high"}, "then must be a non-empty object"),
        ({**GOOD, "then": {"status": "resolved"}}, "'status'"),
        ({**GOOD, "then": {"priority": "critical"}}, "priority must be one of"),
        ({**GOOD, "then": {"priority": None}}, "priority must be one of"),
        ({**GOOD, "then": {"queue": "not a slug"}}, "queue must be a queue slug"),
        ({**GOOD, "then": {"queue": ""}}, "queue must be a queue slug"),
        ({**GOOD, "then": {"queue": 7}}, "queue must be a queue slug"),
    ],
    ids=lambda value: repr(value)[:60],
)
def test_a_bad_rule_is_refused_naming_its_index(bad: object, names: str) -> None:
    with pytest.raises(RuleError) as excinfo:
        check_rules([GOOD, GOOD, bad])
    message = str(excinfo.value)
    assert message.startswith("rules[2]")
    assert names in message


def test_the_first_bad_rule_is_the_one_named() -> None:
    with pytest.raises(RuleError, match=r"^rules\[1\]"):
        check_rules([GOOD, rule("priority", "is", 1), rule("priority", "eq", {1})])


def test_rule_error_is_a_value_error() -> None:
    assert issubclass(RuleError, ValueError)
