"""The check of a tool call's arguments against the tool's input schema (the subset of JSON Schema
the tool table uses): ToolError naming the first problem and where it is (`edits[1].old_text`).

Supported: type (string, number, integer, boolean, array, object), properties, required,
additionalProperties false, items, minItems, maxItems, minLength, maxLength, minimum, maximum,
exclusiveMinimum, enum. The schema shown by `tools/list` is the one checked here, so the two cannot
disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from web import errors

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def validate_arguments(spec, arguments: Any) -> dict[str, Any]:
    """Check arguments against the tool's schema; raise ToolError naming the first problem."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise errors.ToolError(f"{spec.name}: arguments must be an object", code="invalid_arguments")
    _check_object(spec.name, "", arguments, spec.properties, spec.required)
    return arguments


def _fail(tool: str, message: str) -> errors.ToolError:
    return errors.ToolError(f"{tool}: {message}", code="invalid_arguments")


def _check_object(tool: str, where: str, value: dict, properties: dict, required) -> None:
    for name in required:
        if name not in value:
            raise _fail(tool, f"missing required argument '{where}{name}'")
    for name, item in value.items():
        schema = properties.get(name)
        if schema is None:
            raise _fail(tool, f"unknown argument '{where}{name}' (accepted: {', '.join(properties) or 'none'})")
        _check(tool, f"{where}{name}", item, schema)


def _check(tool: str, where: str, value: Any, schema: dict) -> None:
    kind = schema["type"]
    if not _JSON_TYPES[kind](value):
        raise _fail(tool, f"argument '{where}' must be a{'n' if kind[0] in 'aeio' else ''} {kind}, got {_json_type(value)}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise _fail(tool, f"argument '{where}' must not be empty")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise _fail(tool, f"argument '{where}' is too long")
    if kind == "number" and not (0 < value <= schema.get("maximum", float("inf"))):
        raise _fail(tool, f"argument '{where}' must be above 0 and at most {schema.get('maximum')}")
    if kind == "integer":
        if value < schema.get("minimum", 0):
            raise _fail(tool, f"argument '{where}' must be at least {schema.get('minimum', 0)}")
        if "maximum" in schema and value > schema["maximum"]:
            raise _fail(tool, f"argument '{where}' must be at most {schema['maximum']}")
    if "enum" in schema and value not in schema["enum"]:
        raise _fail(tool, f"argument '{where}' must be one of {', '.join(schema['enum'])}")
    if kind == "array":
        if len(value) < schema.get("minItems", 0):
            raise _fail(tool, f"argument '{where}' needs at least {schema['minItems']} item(s)")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise _fail(tool, f"argument '{where}' takes at most {schema['maxItems']} items")
        for index, item in enumerate(value):
            _check(tool, f"{where}[{index}]", item, schema["items"])
    if kind == "object":
        _check_object(tool, f"{where}.", value, schema.get("properties", {}), schema.get("required", ()))


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
