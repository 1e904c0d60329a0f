"""Tool calls: how each call becomes a relayed command (or is answered here), and what the model reads.

A command's non-zero exit code is a normal result. Whatever keeps a call from being carried out (bad
arguments, an unknown or offline machine, a refused path, a timeout) becomes an `isError` result with
a precise message, so the model can read it and correct itself. Every call is audited.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import mcp_types

from web import controls, errors
from web.audit import AuditEntry, record_refusal
from web.mcp import interactive, outcome, structured
from web.mcp.arguments import validate_arguments
from web.mcp.tool_specs import ToolSpec, configured
from web.models import TERMINAL_STATES
from web.relay import stdin
from web.relay.relay import Relay

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CallContext:
    session_id: str = ""
    transport: str = ""
    # The JSON-RPC id of the tools/call, so `notifications/cancelled` can find its command.
    request_id: Any = None
    # progress(progress, total, message) sends notifications/progress to the caller when it asked for
    # them (a progressToken) and its transport can carry them; None otherwise.
    progress: Callable[[float, float | None, str | None], None] | None = None
    # Told the id of the command the call waits on, once it is queued (a resumable answer stream
    # records it, so that another process can finish the answer if this one dies).
    on_submitted: Callable[[str], None] | None = None


def request_key(request_id: Any) -> str:
    """A JSON-RPC request id as stored with its command: JSON text, so 1 and "1" stay apart."""
    return json.dumps(request_id, separators=(",", ":"))[:200]


class ToolBox:
    """Runs tool calls: validates, picks the machine, relays, waits (bounded), formats and audits."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.config = relay.config
        self.tools = configured(
            default_timeout_seconds=self.config.default_command_timeout_seconds,
            max_timeout_seconds=self.config.max_command_timeout_seconds,
        )
        self.tools_by_name = {spec.name: spec for spec in self.tools}
        self._local = {
            "check_agent_status": self._check_agent_status,
            "get_command_output": self._get_command_output,
            "cancel_command": self._cancel_command,
            "list_commands": self._list_commands,
            "send_input": self._send_input,
        }

    def definitions(self) -> list[mcp_types.Tool]:
        return [spec.definition() for spec in self.tools]

    def call(self, name: str, arguments: Any, context: CallContext) -> mcp_types.CallToolResult:
        spec = self.tools_by_name.get(name)
        if spec is None:
            error = errors.InvalidParams(f"Unknown tool: {name[:100]!r}. Available: {', '.join(self.tools_by_name)}")
            record_refusal(
                transport=context.transport, tool=name, error_code="unknown_tool", message=error.message,
                session_id=context.session_id, arguments=arguments,
            )
            raise error
        audit = AuditEntry(session_id=context.session_id, transport=context.transport, tool=name, arguments=arguments)
        machine = ""
        try:
            arguments = validate_arguments(spec, arguments)
            if not spec.relayed:
                text, typed = self._local[name](arguments)
                audit.finish(status="ok", is_error=False, output_bytes=len(text))
                return _text_result(text, typed)
            machine = self._pick_machine(arguments.get("machine"))
            return self._relay(spec, machine, arguments, context, audit)
        except errors.ToolError as error:
            # A refused machine (offline, unknown) is named in the row, as asked for.
            requested = arguments.get("machine") if isinstance(arguments, dict) else None
            machine = machine or (requested if isinstance(requested, str) else "")
            audit.finish(status="refused", is_error=True, message=error.message, machine=machine[:64], error_code=error.code)
            return _text_result(error.message, is_error=True)
        except Exception:
            log.exception("tool %s failed", name)
            audit.finish(status="error", is_error=True, message="internal error", machine=machine, error_code="internal_error")
            raise

    def cancel_request(self, session_id: str, request_id: Any, reason: str = "") -> None:
        """The client sent `notifications/cancelled` for a tools/call: cancel its command, if any.
        The call may be waiting in another server process: the command is found by its request."""
        if not session_id or request_id is None:
            return
        command = self.relay.pending_for_request(session_id, request_key(request_id))
        if command is not None:
            log.info("client cancelled the call waiting on command %s", command.id[:8])
            self.relay.cancel(command.id, actor="client", reason=reason or "notifications/cancelled")

    def _relay(self, spec: ToolSpec, machine: str, arguments: dict, context: CallContext, audit: AuditEntry) -> mcp_types.CallToolResult:
        payload = {k: v for k, v in arguments.items() if k != "machine"}
        timeout = float(payload.pop("timeout", self.config.default_command_timeout_seconds))
        command = self.relay.submit(
            machine, spec.name, payload, timeout_seconds=timeout, session_id=context.session_id,
            request_id=None if context.request_id is None else request_key(context.request_id),
        )
        if context.on_submitted is not None:
            context.on_submitted(command.id)
        waited = min(timeout + self.config.result_grace_seconds, self.config.tool_wait_seconds)
        # An interactive command answers as soon as it is quiet (waiting at a prompt), not when it ends.
        until = (lambda c: stdin.idle_mark(c) is not None) if stdin.interactive(command) else None
        command = self.relay.wait(command.id, waited, on_change=self._reporter(context), known=command, until=until)
        result, text, is_error = self._outcome(command, waited)
        audit.finish(
            status=command.state,
            is_error=is_error,
            machine=machine,
            message=controls.shown(text) if is_error else "",
            error_code=command.error_code,
            exit_code=command.exit_code,
            output_bytes=len(text.encode("utf-8", "surrogatepass")),
            command_id=command.id,
        )
        return result

    def finish(self, command_id: str) -> mcp_types.CallToolResult:
        """The result of a call whose command was queued by a server process that has since died."""
        command = self.relay.get(command_id)
        waited = self.config.tool_wait_seconds
        until = (lambda c: stdin.idle_mark(c) is not None) if stdin.interactive(command) else None
        return self._outcome(self.relay.wait(command_id, waited, until=until), waited)[0]

    def _outcome(self, command, waited: float) -> tuple[mcp_types.CallToolResult, str, bool]:
        """What the model reads about a command it waited on for `waited` seconds."""
        text, is_error = outcome.describe(self.relay, command, waited=waited)
        result = _text_result(text, structured.relayed(self.relay, command), is_error=is_error)
        image = (command.result or {}).get("image") if command.tool == "read_file" and not is_error else None
        if isinstance(image, str) and str((command.result or {}).get("mime_type", "")).startswith("image/"):
            result.content.append(mcp_types.ImageContent(type="image", data=image, mime_type=command.result["mime_type"]))
        return result, text, is_error

    def _reporter(self, context: CallContext):
        """An on_change callback sending the new output as progress notifications, or None."""
        if context.progress is None:
            return None
        sent = {"stdout": 0, "stderr": 0}

        def report(command) -> None:
            message = controls.shown(outcome.new_output(self.relay, command, sent))
            if message:
                total = sum(sent.values())
                try:
                    context.progress(float(total), None, message)
                except Exception:  # a dead stream must not break the call
                    log.info("could not send progress for command %s", command.id[:8])

        return report

    # --- tools answered by the server itself ----------------------------------------------------

    # Each returns the text and the structured content of a successful answer; a refusal raises ToolError.

    def _check_agent_status(self, arguments: dict) -> tuple[str, dict]:
        typed = {"machines": self.relay.status()}
        return json.dumps(typed, indent=2), typed

    def _command(self, command_id: str):
        command = self.relay.find(command_id)
        if command is None:
            raise errors.ToolError(f"no command {command_id!r}; list_commands shows the recent ones", code="unknown_command")
        return command

    def _get_command_output(self, arguments: dict) -> tuple[str, dict]:
        self.relay.sweep_soon()
        command = self._command(arguments["command_id"])
        return outcome.page_text(
            self.relay, command, arguments.get("stream", "stdout"), arguments.get("offset", 0), self.config.tool_output_budget_bytes
        )

    def _cancel_command(self, arguments: dict) -> tuple[str, dict]:
        command = self._command(arguments["command_id"])
        if command.state in TERMINAL_STATES:
            text = f"command {command.id} already ended {command.state}; nothing to cancel"
        else:
            command = self.relay.cancel(command.id, actor="client", reason="cancel_command")
            if command.state in TERMINAL_STATES:
                text = f"command {command.id} was cancelled before it started; it never ran"
            else:
                command = self.relay.wait(command.id, min(self.config.tool_wait_seconds, 10.0))
                text = f"command {command.id} ended {command.state}" if command.state in TERMINAL_STATES else (
                    f"cancellation of command {command.id} was sent to machine {command.machine!r}; it is still "
                    f"{command.state}: check with get_command_output(command_id='{command.id}')"
                )
        return text, {"command_id": command.id, "state": command.state, "message": text}

    def _send_input(self, arguments: dict) -> tuple[str, dict]:
        command = self._command(arguments["command_id"])
        return interactive.send_input(self.relay, command, arguments.get("text", ""), bool(arguments.get("close", False)))

    def _list_commands(self, arguments: dict) -> tuple[str, dict]:
        state = arguments.get("state")
        commands = self.relay.commands(machine=arguments.get("machine"), states=[state] if state else None, limit=50)
        typed = structured.commands(commands, outcome.summary_line)
        if not commands:
            return "no commands match", typed
        return "\n".join(outcome.summary_line(c) for c in commands), typed

    def _pick_machine(self, requested: str | None) -> str:
        if requested is not None:
            # One row, not the list: with thousands of machines, reading them all blocked the worker
            # for tens of milliseconds on every call that named its machine (scripts/bench.py --idle).
            match = self.relay.machine(requested)
            if match is None:
                raise errors.ToolError(
                    f"unknown machine {requested!r}; known machines: {self._describe(self.relay.machines())}", code="unknown_machine"
                )
            if not self.relay.is_online(match):
                ago = time.time() - self.relay.last_seen_at(match)
                raise errors.ToolError(
                    f"machine {requested!r} is offline: its agent has not polled for {ago:.0f} s", code="agent_offline"
                )
            return match.name
        machines = self.relay.machines()
        online = [m for m in machines if self.relay.is_online(m)]
        if len(online) == 1:
            return online[0].name
        if not online:
            raise errors.ToolError(
                f"no machine is online (known machines: {self._describe(machines)}); start the agent with "
                "'python -m agent'",
                code="agent_offline",
            )
        raise errors.ToolError(
            f"{len(online)} machines are online ({', '.join(m.name for m in online)}): "
            "pass 'machine' to choose one",
            code="machine_required",
        )

    def _describe(self, machines: list) -> str:
        if not machines:
            return "none"
        return ", ".join(f"{m.name} ({'online' if self.relay.is_online(m) else 'offline'})" for m in machines)


def _text_result(text: str, typed: dict | None = None, *, is_error: bool = False) -> mcp_types.CallToolResult:
    """A result with its text, and its structured content when it has one (a refusal has none).
    Every answer's text passes here, and only here, through controls.shown (control characters escaped)."""
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text=controls.shown(text))], structured_content=typed, is_error=is_error
    )
