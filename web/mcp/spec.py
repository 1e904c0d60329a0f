"""One tool's entry in the tool table (web/mcp/tool_specs.py): what `tools/list` shows of it."""

from __future__ import annotations

import dataclasses
from typing import Any

import mcp_types

MACHINE_PROPERTY = {
    "type": "string",
    "description": "Machine name; optional if only one is online.",
    "maxLength": 64,
}


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    properties: dict[str, Any]
    required: tuple[str, ...] = ()
    relayed: bool = True
    read_only: bool = False
    title: str = ""
    output: dict[str, Any] | None = None  # the outputSchema
    destructive: bool = False  # may delete or overwrite (meaningful when not read-only)
    idempotent: bool = False  # a repeat with the same arguments has no further effect
    open_world: bool = False  # may reach beyond the machine (e.g. the network)

    def definition(self) -> mcp_types.Tool:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": self.properties,
            "additionalProperties": False,
        }
        if self.required:
            schema["required"] = list(self.required)
        return mcp_types.Tool(
            name=self.name,
            description=self.description,
            title=self.title or None,
            input_schema=schema,
            output_schema=_bare(self.output),
            # The title is given once, on the tool (annotations.title is its older spelling).
            annotations=mcp_types.ToolAnnotations(
                read_only_hint=self.read_only,
                destructive_hint=False if self.read_only else self.destructive,
                idempotent_hint=True if self.read_only else self.idempotent,
                open_world_hint=self.open_world,
            ),
        )


def _bare(schema: Any) -> Any:
    """An output schema without its descriptions: they document the source (web/mcp/result_schemas.py)
    and README.md, while every byte of `tools/list` is paid for in every conversation."""
    if isinstance(schema, dict):
        return {key: _bare(value) for key, value in schema.items() if not (key == "description" and isinstance(value, str))}
    if isinstance(schema, list):
        return [_bare(item) for item in schema]
    return schema
