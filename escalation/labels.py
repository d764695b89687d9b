"""Label schemas: the one check of a queue's schema and the one validation of a case's labels.

A label schema is a small subset of JSON Schema (see SPEC "Label schema"). The subset is checked
here by hand, because the spec allows far less than JSON Schema does and an admin deserves a
one-line reason naming the bad property. Label *values* are validated with `jsonschema`, and its
errors are turned into one human message per field, which the API and the web form both show.
"""

from __future__ import annotations

import math
import re
from typing import Any

from jsonschema import Draft202012Validator, ValidationError


class SchemaError(ValueError):
    """A label schema outside the allowed subset; the message is one line naming the property."""


EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
SCHEMA_KEYS = frozenset(
    {"type", "properties", "required", "title", "description", "additionalProperties"}
)
COMMON_PROP_KEYS = frozenset({"type", "title", "description", "default"})
KIND_KEYS = {
    "choice": COMMON_PROP_KEYS | {"enum"},
    "boolean": COMMON_PROP_KEYS,
    "text": COMMON_PROP_KEYS | {"maxLength"},
    "number": COMMON_PROP_KEYS | {"minimum", "maximum"},
    "multi": COMMON_PROP_KEYS | {"items", "uniqueItems"},
}
UNKNOWN_FIELD = "is not a field of this queue's labels"


def _is_number(value: object) -> bool:
    # bool is a subclass of int in Python, but true/false are not numbers in JSON.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _kind(prop: dict[str, Any]) -> str | None:
    type_ = prop.get("type")
    if type_ == "string":
        return "choice" if "enum" in prop else "text"
    if type_ == "boolean":
        return "boolean"
    if type_ in ("number", "integer"):
        return "number"
    if type_ == "array":
        return "multi"
    return None


def _check_enum(where: str, enum: object) -> None:
    if not isinstance(enum, list) or not enum:
        raise SchemaError(f"{where}: enum must be a non-empty list of strings")
    if not all(isinstance(choice, str) for choice in enum):
        raise SchemaError(f"{where}: enum must contain only strings")
    if len(set(enum)) != len(enum):
        raise SchemaError(f"{where}: enum must not repeat a choice")


def _check_texts(where: str, obj: dict[str, Any]) -> None:
    for key in ("title", "description"):
        if key in obj and not isinstance(obj[key], str):
            raise SchemaError(f"{where}: {key} must be a string")


def _check_prop(name: object, prop: object) -> None:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise SchemaError(
            f"property {name!r}: name must be lowercase letters, digits and _ "
            "(starting with a letter, at most 64 characters)"
        )
    where = f"property {name!r}"
    if not isinstance(prop, dict):
        raise SchemaError(f"{where}: must be an object")
    kind = _kind(prop)
    if kind is None:
        raise SchemaError(f"{where}: type must be one of string, boolean, number, integer, array")
    extra = sorted(set(prop) - KIND_KEYS[kind], key=str)
    if extra:
        raise SchemaError(f"{where}: key {extra[0]!r} is not allowed for a {kind} field")
    _check_texts(where, prop)

    if kind == "choice":
        _check_enum(where, prop["enum"])
    elif kind == "text" and "maxLength" in prop:
        max_length = prop["maxLength"]
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
            raise SchemaError(f"{where}: maxLength must be a positive integer")
    elif kind == "number":
        for key in ("minimum", "maximum"):
            if key in prop and not _is_number(prop[key]):
                raise SchemaError(f"{where}: {key} must be a number")
        if "minimum" in prop and "maximum" in prop and prop["minimum"] > prop["maximum"]:
            raise SchemaError(f"{where}: minimum must not exceed maximum")
    elif kind == "multi":
        items = prop.get("items")
        if not isinstance(items, dict) or items.get("type") != "string" or "enum" not in items:
            raise SchemaError(f'{where}: items must be {{"type": "string", "enum": [...]}}')
        if set(items) != {"type", "enum"}:
            raise SchemaError(f"{where}: items may only have type and enum")
        _check_enum(f"{where} items", items["enum"])
        if "uniqueItems" in prop and prop["uniqueItems"] is not True:
            raise SchemaError(f"{where}: uniqueItems may only be true")

    if "default" in prop:
        # A default the form would pre-fill must itself pass validation, not merely be the
        # right type: a default outside the enum or above the maximum would be refused on submit.
        problem = _value_problem(prop, prop["default"])
        if problem:
            raise SchemaError(f"{where}: default {problem}")


def check_schema(schema: object) -> dict:
    """Return the schema if it is a valid label schema, else raise SchemaError.

    Valid: {"type": "object", "properties": {name: prop}}, optional "required" (names in
    properties), "title"/"description" strings, "additionalProperties": false; no other keys.
    Each prop (name ^[a-z][a-z0-9_]{0,63}$) is exactly one of: single choice (string + enum),
    boolean, text (string, optional positive maxLength), number/integer (optional
    minimum <= maximum), multi-choice (array of string enum, optional uniqueItems: true); each
    with optional "title", "description" and a "default" that is itself a valid value.
    """
    if not isinstance(schema, dict):
        raise SchemaError("label schema must be a JSON object")
    extra = sorted(set(schema) - SCHEMA_KEYS, key=str)
    if extra:
        raise SchemaError(f"label schema: key {extra[0]!r} is not allowed")
    if schema.get("type") != "object":
        raise SchemaError('label schema: type must be "object"')
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        raise SchemaError("label schema: properties must be an object")
    _check_texts("label schema", schema)
    if "additionalProperties" in schema and schema["additionalProperties"] is not False:
        raise SchemaError("label schema: additionalProperties may only be false")
    for name, prop in properties.items():
        _check_prop(name, prop)
    required = schema.get("required", [])
    if not isinstance(required, list):
        raise SchemaError("label schema: required must be a list of property names")
    for name in required:
        if not isinstance(name, str) or name not in properties:
            raise SchemaError(f"required property {name!r} is not in properties")
    if len(set(required)) != len(required):
        raise SchemaError("label schema: required must not repeat a property")
    return schema


def _choices(values: list[str]) -> str:
    return ", ".join(values)


def _type_message(prop: dict[str, Any]) -> str:
    return {
        "choice": f"must be one of: {_choices(prop.get('enum', []))}",
        "text": "must be a string",
        "boolean": "must be true or false",
        "number": "must be a whole number" if prop.get("type") == "integer" else "must be a number",
        "multi": "must be a list",
    }.get(_kind(prop) or "", "is not valid")


def _message(prop: dict[str, Any], error: ValidationError) -> str:
    kind = _kind(prop)
    if kind == "multi" and error.validator == "uniqueItems":
        return "must not repeat a choice"
    if kind == "multi" and error.relative_path:
        return f"must only contain choices from: {_choices(prop['items']['enum'])}"
    if error.validator == "maxLength":
        return f"must be at most {prop['maxLength']} characters"
    if error.validator == "minimum":
        return f"must be at least {prop['minimum']}"
    if error.validator == "maximum":
        return f"must be at most {prop['maximum']}"
    # Wrong type, or a choice outside the enum: the type message says what is wanted.
    return _type_message(prop)


def _value_problem(prop: dict[str, Any], value: object) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        # NaN slips past minimum/maximum (every comparison with it is false).
        return _type_message(prop)
    rules = {key: val for key, val in prop.items() if key not in ("title", "description")}
    rules.pop("default", None)
    errors = list(Draft202012Validator(rules).iter_errors(value))
    if not errors:
        return None
    # A wrong type makes every other complaint moot, so it is reported first.
    errors.sort(key=lambda e: e.validator != "type" or bool(e.relative_path))
    return _message(prop, errors[0])


def validate(schema: dict, labels: object) -> dict[str, str]:
    """Return {} when `labels` is valid for the (checked) schema, else {field: message}.

    One human-readable message per bad field, e.g. {"category": "must be one of: a, b"},
    {"amount": "must be at most 5000"}, {"severity": "is required"}, {"colour": "is not a field
    of this queue's labels"}. A non-dict gives {"labels": "must be an object"}. Booleans are not
    numbers. Raises SchemaError if the schema itself is not a valid label schema.
    """
    check_schema(schema)
    if not isinstance(labels, dict):
        return {"labels": "must be an object"}
    properties: dict[str, Any] = schema["properties"]
    errors: dict[str, str] = {}
    for name in schema.get("required", []):
        if name not in labels:
            errors[name] = "is required"
    for key, value in labels.items():
        prop = properties.get(key)
        if prop is None:
            errors[str(key)] = UNKNOWN_FIELD
            continue
        problem = _value_problem(prop, value)
        if problem:
            errors[key] = problem
    return errors


def fields(schema: dict, order: list[str] | None = None) -> list[dict]:
    """The schema's fields, in property order, for generating a form. `order` (names) puts
    them in the order the schema was written, which a jsonb column does not keep.

    Each: {"name", "title" (title or name), "description" ("" if none), "kind"
    ('choice'|'boolean'|'text'|'number'|'multi'), "choices" (list; empty unless choice/multi),
    "required" (bool), "max_length", "minimum", "maximum" (None if unset), "integer" (bool),
    "default" (None if unset)}. Raises SchemaError for an invalid schema.
    """
    check_schema(schema)
    required = set(schema.get("required", []))
    properties = schema.get("properties", {})
    rank = {name: i for i, name in enumerate(order or [])}
    names = sorted(properties, key=lambda n: (rank.get(n, len(rank)), list(properties).index(n)))
    out = []
    for name in names:
        prop = properties[name]
        kind = _kind(prop)
        if kind == "choice":
            choices = list(prop["enum"])
        elif kind == "multi":
            choices = list(prop["items"]["enum"])
        else:
            choices = []
        out.append(
            {
                "name": name,
                "title": prop.get("title") or name,
                "description": prop.get("description", ""),
                "kind": kind,
                "choices": choices,
                "required": name in required,
                "max_length": prop.get("maxLength"),
                "minimum": prop.get("minimum"),
                "maximum": prop.get("maximum"),
                "integer": prop.get("type") == "integer",
                "default": prop.get("default"),
            }
        )
    return out
