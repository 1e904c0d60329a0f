"""The tool table as clients see it: size, annotations that are true, output schemas that are valid,
and structured answers of the server's own tools that match them."""

from __future__ import annotations

import json

import jsonschema
import pytest

from web.mcp.structured import signal_of
from web.mcp.tool_specs import TOOLS, TOOLS_BY_NAME, configured
from web.mcp.tools import CallContext

CHANGING = {"run_shell_command", "write_file", "cancel_command", "send_input"}


def listed() -> list[dict]:
    return [spec.definition().model_dump(by_alias=True, exclude_none=True, mode="json") for spec in TOOLS]


def test_the_whole_tools_list_answer_stays_under_24_kb_of_json():
    """The table as the server sends it (with the settings' timeout text), measured with JSON's default
    spacing, which is larger than the compact form on the wire; 24 KB read as 24 000 bytes."""
    served = configured(default_timeout_seconds=30, max_timeout_seconds=3600)
    answer = {"tools": [spec.definition().model_dump(by_alias=True, exclude_none=True, mode="json") for spec in served]}
    size = len(json.dumps(answer).encode())
    assert size < 24_000, f"tools/list is {size} bytes: shorten descriptions or schemas"


def test_every_tool_has_a_short_title_a_description_and_all_four_hints():
    for tool in listed():
        assert tool["title"] and len(tool["title"]) <= 40, tool["name"]
        assert tool["description"] and len(tool["description"]) <= 600, tool["name"]
        hints = tool["annotations"]
        assert set(hints) >= {"readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"}, tool["name"]


def test_read_only_hints_are_true_only_for_tools_that_change_nothing():
    for spec in TOOLS:
        if spec.name in CHANGING:
            assert not spec.read_only, spec.name
    assert TOOLS_BY_NAME["read_file"].read_only and TOOLS_BY_NAME["list_commands"].read_only
    hints = {t["name"]: t["annotations"] for t in listed()}
    assert hints["run_shell_command"]["openWorldHint"] and hints["run_shell_command"]["destructiveHint"]
    assert not hints["run_shell_command"]["idempotentHint"]
    assert not hints["read_file"]["openWorldHint"] and not hints["read_file"]["destructiveHint"]


def test_every_output_schema_is_a_valid_json_schema_of_an_object():
    for tool in listed():
        schema = tool["outputSchema"]
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object", tool["name"]


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ({"number": 11, "name": "SIGSEGV"}, {"number": 11, "name": "SIGSEGV"}),
        ({"number": 11, "name": "SIGSEGV", "from_exit_status": True}, {"number": 11, "name": "SIGSEGV", "from_exit_status": True}),
        ({"number": 11, "from_exit_status": "yes"}, {"number": 11, "name": "SIGSEGV"}),
        ("SIGKILL", {"number": 9, "name": "SIGKILL"}),
        (15, {"number": 15, "name": "SIGTERM"}),
        ("SIGNOTHERE", {"name": "SIGNOTHERE"}),
        (None, None),
        (True, None),
        ({"number": "x"}, None),
    ],
)
def test_the_signal_field_takes_whatever_the_agent_reports(reported, expected):
    assert signal_of({"signal": reported}) == expected


def test_the_servers_own_tools_answer_structured_content_that_matches_their_schemas(app):
    toolbox = app.extensions["code_remote"].toolbox
    context = CallContext(session_id="s", transport="http")
    for name, arguments in (("check_agent_status", {}), ("list_commands", {})):
        result = toolbox.call(name, arguments, context)
        assert not result.is_error
        jsonschema.validate(result.structured_content, TOOLS_BY_NAME[name].output)
    refused = toolbox.call("get_command_output", {"command_id": "nope"}, context)
    assert refused.is_error and refused.structured_content is None
