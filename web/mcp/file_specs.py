"""The file tools for coding work: edit, search, file operations and undo, as `tools/list` shows them.

Each has an output schema: its structuredContent is the agent's result for the call (agent/*.py)
beside its command's id and state (web/mcp/structured.py). Descriptions stay short: the whole tool
list is paid for in every conversation.
"""

from __future__ import annotations

from typing import Any

from web.mcp.result_schemas import RELAYED, RELAYED_REQUIRED
from web.mcp.spec import MACHINE_PROPERTY, ToolSpec

PATH = {"type": "string", "description": "Absolute path, or relative to the home folder."}


def result_schema(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {**RELAYED, **properties}, "required": RELAYED_REQUIRED}


STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
NULLABLE_INTEGER = {"type": ["integer", "null"]}

FILE_TOOLS = (
    ToolSpec(
        "edit_file",
        "Replace exact text in a file: each edit's old_text must occur expected_replacements times (default 1). "
        "All edits apply or none; a mismatch lists the matching lines or the closest near-miss. Keeps "
        "encoding, line endings and mode; answers a unified diff. dry_run previews.",
        {
            "path": PATH,
            "edits": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "properties": {
                        "old_text": {"type": "string", "minLength": 1},
                        "new_text": {"type": "string"},
                        "expected_replacements": {"type": "integer", "minimum": 1},
                    },
                    "required": ["old_text", "new_text"],
                    "additionalProperties": False,
                },
            },
            "dry_run": {"type": "boolean", "description": "Show the diff without writing."},
            "machine": MACHINE_PROPERTY,
        },
        ("path", "edits"),
        title="Edit file",
        destructive=True,
        output=result_schema(path=STRING, replacements=INTEGER, dry_run=BOOLEAN, diff=STRING, checkpoint_id=STRING),
    ),
)
