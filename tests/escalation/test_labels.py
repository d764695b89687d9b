from __future__ import annotations

import copy

import pytest

from escalation.labels import EMPTY_SCHEMA, SchemaError, check_schema, fields, validate

CATEGORY = {"type": "string", "enum": ["fraud", "goodwill", "error"], "title": "Category"}
CORRECT = {"type": "boolean", "title": "Was the agent right?"}
NOTE = {"type": "string", "maxLength": 10, "description": "Short note"}
AMOUNT = {"type": "number", "minimum": 0, "maximum": 5000}
COUNT = {"type": "integer", "minimum": 1}
TAGS = {
    "type": "array",
    "items": {"type": "string", "enum": ["vip", "repeat"]},
    "uniqueItems": True,
}

SCHEMA = {
    "type": "object",
    "title": "Refund labels",
    "description": "What a refund decision teaches",
    "properties": {
        "category": CATEGORY,
        "correct": CORRECT,
        "note": NOTE,
        "amount": AMOUNT,
        "count": COUNT,
        "tags": TAGS,
    },
    "required": ["category"],
    "additionalProperties": False,
}


def schema_with(**props: object) -> dict:
    return {"type": "object", "properties": props}


# check_schema: valid schemas


def test_the_empty_schema_is_valid() -> None:
    assert check_schema(EMPTY_SCHEMA) is EMPTY_SCHEMA


def test_a_schema_using_every_field_kind_is_returned_unchanged() -> None:
    original = copy.deepcopy(SCHEMA)
    assert check_schema(SCHEMA) is SCHEMA
    assert original == SCHEMA


@pytest.mark.parametrize(
    "prop",
    [
        {"type": "string", "enum": ["a"]},
        {"type": "string", "enum": ["a", "b"], "default": "b", "title": "T", "description": "D"},
        {"type": "boolean"},
        {"type": "boolean", "default": False},
        {"type": "string"},
        {"type": "string", "maxLength": 1, "default": "x"},
        {"type": "number"},
        {"type": "number", "minimum": -1.5, "maximum": 2.5, "default": 0},
        {"type": "number", "minimum": 3, "maximum": 3},
        {"type": "integer", "maximum": 10, "default": 10},
        {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        {"type": "array", "items": {"type": "string", "enum": ["a"]}, "default": ["a"]},
        {"type": "array", "items": {"type": "string", "enum": ["a"]}, "uniqueItems": True},
    ],
    ids=lambda prop: repr(prop),
)
def test_each_allowed_property_kind_is_accepted(prop: dict) -> None:
    schema = schema_with(field=prop)
    assert check_schema(schema) is schema


def test_property_names_may_use_digits_and_underscores_up_to_64_characters() -> None:
    check_schema(schema_with(a_1=CORRECT, **{"b" * 64: CORRECT}))


# check_schema: invalid schemas, each refused with a one-line reason


@pytest.mark.parametrize(
    ("schema", "names"),
    [
        (None, "must be a JSON object"),
        ([], "must be a JSON object"),
        ({"properties": {}}, "type"),
        ({"type": "array", "properties": {}}, "type"),
        ({"type": "object"}, "properties"),
        ({"type": "object", "properties": []}, "properties"),
        ({"type": "object", "properties": {}, "$schema": "x"}, "'$schema'"),
        ({"type": "object", "properties": {}, "title": 3}, "title"),
        ({"type": "object", "properties": {}, "description": ["x"]}, "description"),
        (
            {"type": "object", "properties": {}, "additionalProperties": True},
            "additionalProperties",
        ),
        ({"type": "object", "properties": {}, "required": "a"}, "required"),
        ({"type": "object", "properties": {}, "required": ["ghost"]}, "'ghost'"),
        (
            {"type": "object", "properties": {"a": CORRECT}, "required": ["a", "a"]},
            "must not repeat",
        ),
    ],
    ids=lambda value: repr(value)[:60],
)
def test_a_bad_schema_shape_is_refused(schema: object, names: str) -> None:
    with pytest.raises(SchemaError) as excinfo:
        check_schema(schema)
    message = str(excinfo.value)
    assert names in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "prop", "names"),
    [
        ("Upper", CORRECT, "name must be lowercase"),
        ("1st", CORRECT, "name must be lowercase"),
        ("_x", CORRECT, "name must be lowercase"),
        ("has-dash", CORRECT, "name must be lowercase"),
        ("a" * 65, CORRECT, "name must be lowercase"),
        ("trailing\n", CORRECT, "name must be lowercase"),
        ("p", "string", "must be an object"),
        ("p", {}, "type must be one of"),
        ("p", {"type": "object"}, "type must be one of"),
        ("p", {"type": "null"}, "type must be one of"),
        ("p", {"type": ["string", "null"]}, "type must be one of"),
        ("p", {"type": "boolean", "enum": [True]}, "'enum'"),
        ("p", {"type": "boolean", "title": 1}, "title"),
        ("p", {"type": "boolean", "description": None}, "description"),
        ("p", {"type": "boolean", "default": "yes"}, "default must be true or false"),
        ("p", {"type": "boolean", "default": 0}, "default must be true or false"),
        ("p", {"type": "string", "enum": []}, "enum must be a non-empty list"),
        ("p", {"type": "string", "enum": "abc"}, "enum must be a non-empty list"),
        ("p", {"type": "string", "enum": ["a", 1]}, "enum must contain only strings"),
        ("p", {"type": "string", "enum": ["a", "a"]}, "enum must not repeat"),
        ("p", {"type": "string", "enum": ["a"], "maxLength": 3}, "'maxLength'"),
        ("p", {"type": "string", "enum": ["a"], "default": "z"}, "default must be one of: a"),
        ("p", {"type": "string", "pattern": "^a"}, "'pattern'"),
        ("p", {"type": "string", "minLength": 1}, "'minLength'"),
        ("p", {"type": "string", "maxLength": 0}, "maxLength must be a positive integer"),
        ("p", {"type": "string", "maxLength": 2.5}, "maxLength must be a positive integer"),
        ("p", {"type": "string", "maxLength": True}, "maxLength must be a positive integer"),
        ("p", {"type": "string", "maxLength": 2, "default": "abc"}, "default must be at most 2"),
        ("p", {"type": "string", "default": 5}, "default must be a string"),
        ("p", {"type": "number", "minimum": "1"}, "minimum must be a number"),
        ("p", {"type": "number", "maximum": True}, "maximum must be a number"),
        ("p", {"type": "number", "maximum": float("inf")}, "maximum must be a number"),
        ("p", {"type": "number", "minimum": 5, "maximum": 1}, "minimum must not exceed maximum"),
        ("p", {"type": "number", "exclusiveMinimum": 0}, "'exclusiveMinimum'"),
        ("p", {"type": "number", "multipleOf": 2}, "'multipleOf'"),
        ("p", {"type": "number", "maximum": 1, "default": 2}, "default must be at most 1"),
        ("p", {"type": "number", "default": True}, "default must be a number"),
        ("p", {"type": "integer", "default": 1.5}, "default must be a whole number"),
        ("p", {"type": "array"}, "items must be"),
        ("p", {"type": "array", "items": {"type": "string"}}, "items must be"),
        ("p", {"type": "array", "items": {"type": "number", "enum": [1]}}, "items must be"),
        ("p", {"type": "array", "items": [{"type": "string"}]}, "items must be"),
        (
            "p",
            {"type": "array", "items": {"type": "string", "enum": ["a"], "title": "x"}},
            "items may only have type and enum",
        ),
        ("p", {"type": "array", "items": {"type": "string", "enum": []}}, "enum must be"),
        ("p", {"type": "array", "items": {"type": "string", "enum": ["a", "a"]}}, "repeat"),
        (
            "p",
            {"type": "array", "items": {"type": "string", "enum": ["a"]}, "uniqueItems": False},
            "uniqueItems may only be true",
        ),
        (
            "p",
            {"type": "array", "items": {"type": "string", "enum": ["a"]}, "minItems": 1},
            "'minItems'",
        ),
        (
            "p",
            {"type": "array", "items": {"type": "string", "enum": ["a"]}, "default": ["b"]},
            "default must only contain choices from: a",
        ),
        (
            "p",
            {"type": "array", "items": {"type": "string", "enum": ["a"]}, "default": "a"},
            "default must be a list",
        ),
    ],
    ids=lambda value: repr(value)[:50],
)
def test_a_bad_property_is_refused_with_a_message_naming_it(
    name: str, prop: object, names: str
) -> None:
    with pytest.raises(SchemaError) as excinfo:
        check_schema({"type": "object", "properties": {name: prop}})
    message = str(excinfo.value)
    assert repr(name) in message
    assert names in message
    assert "\n" not in message


def test_schema_error_is_a_value_error() -> None:
    assert issubclass(SchemaError, ValueError)


# validate


def test_valid_labels_give_no_errors() -> None:
    good = {
        "category": "fraud",
        "correct": True,
        "note": "0123456789",
        "amount": 5000,
        "count": 3,
        "tags": ["vip", "repeat"],
    }
    assert validate(SCHEMA, good) == {}


def test_optional_fields_may_be_left_out() -> None:
    assert validate(SCHEMA, {"category": "error"}) == {}


def test_empty_labels_are_valid_for_the_empty_schema() -> None:
    assert validate(EMPTY_SCHEMA, {}) == {}


def test_non_object_labels_are_refused_as_a_whole() -> None:
    assert validate(SCHEMA, ["fraud"]) == {"labels": "must be an object"}
    assert validate(SCHEMA, None) == {"labels": "must be an object"}
    assert validate(SCHEMA, "fraud") == {"labels": "must be an object"}


def test_a_missing_required_label_is_reported() -> None:
    assert validate(SCHEMA, {}) == {"category": "is required"}


def test_unknown_label_key_is_refused() -> None:
    assert validate(SCHEMA, {"category": "fraud", "colour": "red"}) == {
        "colour": "is not a field of this queue's labels"
    }


def test_unknown_keys_are_refused_even_for_the_empty_schema() -> None:
    assert validate(EMPTY_SCHEMA, {"x": 1}) == {"x": "is not a field of this queue's labels"}


def test_a_choice_outside_the_enum_lists_the_choices() -> None:
    assert validate(SCHEMA, {"category": "other"}) == {
        "category": "must be one of: fraud, goodwill, error"
    }


def test_a_choice_of_the_wrong_type_also_lists_the_choices() -> None:
    assert validate(SCHEMA, {"category": 1}) == {
        "category": "must be one of: fraud, goodwill, error"
    }


@pytest.mark.parametrize("value", ["true", 1, 0, None, []])
def test_a_boolean_label_must_be_true_or_false(value: object) -> None:
    assert validate(SCHEMA, {"category": "fraud", "correct": value}) == {
        "correct": "must be true or false"
    }


def test_a_text_label_must_be_a_string() -> None:
    assert validate(SCHEMA, {"category": "fraud", "note": 12}) == {"note": "must be a string"}


def test_a_text_label_longer_than_max_length_is_refused() -> None:
    assert validate(SCHEMA, {"category": "fraud", "note": "01234567890"}) == {
        "note": "must be at most 10 characters"
    }


def test_a_number_above_the_maximum_is_refused() -> None:
    assert validate(SCHEMA, {"category": "fraud", "amount": 5000.01}) == {
        "amount": "must be at most 5000"
    }


def test_a_number_below_the_minimum_is_refused() -> None:
    assert validate(SCHEMA, {"category": "fraud", "amount": -1}) == {"amount": "must be at least 0"}


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_numbers(value: bool) -> None:
    errors = validate(SCHEMA, {"category": "fraud", "amount": value, "count": value})
    assert errors == {"amount": "must be a number", "count": "must be a whole number"}


@pytest.mark.parametrize("value", ["12", None, [1], float("nan"), float("inf")])
def test_a_number_label_must_be_a_finite_number(value: object) -> None:
    assert validate(SCHEMA, {"category": "fraud", "amount": value}) == {
        "amount": "must be a number"
    }


def test_an_integer_label_refuses_fractions_but_accepts_whole_floats() -> None:
    assert validate(SCHEMA, {"category": "fraud", "count": 2.5}) == {
        "count": "must be a whole number"
    }
    assert validate(SCHEMA, {"category": "fraud", "count": 2.0}) == {}


def test_a_multi_choice_label_must_be_a_list() -> None:
    assert validate(SCHEMA, {"category": "fraud", "tags": "vip"}) == {"tags": "must be a list"}


def test_a_multi_choice_label_refuses_unknown_choices() -> None:
    assert validate(SCHEMA, {"category": "fraud", "tags": ["vip", "gold"]}) == {
        "tags": "must only contain choices from: vip, repeat"
    }
    assert validate(SCHEMA, {"category": "fraud", "tags": [1]}) == {
        "tags": "must only contain choices from: vip, repeat"
    }


def test_a_multi_choice_label_with_unique_items_refuses_repeats() -> None:
    assert validate(SCHEMA, {"category": "fraud", "tags": ["vip", "vip"]}) == {
        "tags": "must not repeat a choice"
    }


def test_a_multi_choice_label_without_unique_items_allows_repeats_and_empty_lists() -> None:
    schema = schema_with(tags={"type": "array", "items": {"type": "string", "enum": ["a"]}})
    assert validate(schema, {"tags": ["a", "a"]}) == {}
    assert validate(schema, {"tags": []}) == {}


def test_every_bad_field_gets_exactly_one_message() -> None:
    errors = validate(
        SCHEMA,
        {"correct": "no", "note": 5, "amount": 9999, "tags": ["x", "x"], "colour": "red"},
    )
    assert errors == {
        "category": "is required",
        "correct": "must be true or false",
        "note": "must be a string",
        "amount": "must be at most 5000",
        "tags": "must only contain choices from: vip, repeat",
        "colour": "is not a field of this queue's labels",
    }


def test_validate_refuses_an_invalid_schema() -> None:
    with pytest.raises(SchemaError):
        validate({"type": "object", "properties": {"x": {"type": "null"}}}, {})


# fields


def test_fields_describe_each_property_in_order_for_the_form() -> None:
    assert fields(SCHEMA) == [
        {
            "name": "category",
            "title": "Category",
            "description": "",
            "kind": "choice",
            "choices": ["fraud", "goodwill", "error"],
            "required": True,
            "max_length": None,
            "minimum": None,
            "maximum": None,
            "integer": False,
            "default": None,
        },
        {
            "name": "correct",
            "title": "Was the agent right?",
            "description": "",
            "kind": "boolean",
            "choices": [],
            "required": False,
            "max_length": None,
            "minimum": None,
            "maximum": None,
            "integer": False,
            "default": None,
        },
        {
            "name": "note",
            "title": "note",
            "description": "Short note",
            "kind": "text",
            "choices": [],
            "required": False,
            "max_length": 10,
            "minimum": None,
            "maximum": None,
            "integer": False,
            "default": None,
        },
        {
            "name": "amount",
            "title": "amount",
            "description": "",
            "kind": "number",
            "choices": [],
            "required": False,
            "max_length": None,
            "minimum": 0,
            "maximum": 5000,
            "integer": False,
            "default": None,
        },
        {
            "name": "count",
            "title": "count",
            "description": "",
            "kind": "number",
            "choices": [],
            "required": False,
            "max_length": None,
            "minimum": 1,
            "maximum": None,
            "integer": True,
            "default": None,
        },
        {
            "name": "tags",
            "title": "tags",
            "description": "",
            "kind": "multi",
            "choices": ["vip", "repeat"],
            "required": False,
            "max_length": None,
            "minimum": None,
            "maximum": None,
            "integer": False,
            "default": None,
        },
    ]


def test_fields_carry_the_default() -> None:
    schema = schema_with(level={"type": "string", "enum": ["a", "b"], "default": "b"})
    assert fields(schema)[0]["default"] == "b"


def test_fields_of_the_empty_schema_are_empty() -> None:
    assert fields(EMPTY_SCHEMA) == []


def test_the_choices_returned_by_fields_are_copies() -> None:
    schema = copy.deepcopy(SCHEMA)
    fields(schema)[0]["choices"].append("extra")
    assert schema["properties"]["category"]["enum"] == ["fraud", "goodwill", "error"]
