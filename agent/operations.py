"""The tools an agent carries out, keyed by name: each returns a result dict or raises OperationError."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from agent import checkpoints, edit, fileops, files, search, shell, writing
from agent import policy as owner_policy
from agent.config import AgentConfig
from agent.errors import OperationError
from agent.masking import Secrets

MAX_WRITE_BYTES = 10 * 1024 * 1024
# The file tools whose call is only their arguments: tool -> run(policy, arguments, config).
FILE_OPERATIONS: dict[str, Callable[[files.PathPolicy, dict[str, Any], AgentConfig], dict[str, Any]]] = {
    "move_file": lambda p, a, c: fileops.move_file(p, a["source"], a["destination"], overwrite=bool(a.get("overwrite"))),
    "copy_file": lambda p, a, c: fileops.copy_file(p, a["source"], a["destination"], overwrite=bool(a.get("overwrite"))),
    "make_directory": lambda p, a, c: fileops.make_directory(p, a["path"]),
    "delete_path": lambda p, a, c: fileops.delete_path(p, a["path"], recursive=bool(a.get("recursive"))),
    "get_file_info": lambda p, a, c: fileops.get_file_info(p, a["path"]),
    "read_multiple_files": lambda p, a, c: files.read_multiple_files(p, a["paths"], max_bytes=c.max_read_bytes),
}


def perform(
    tool: str, arguments: dict[str, Any], timeout_seconds: float, config: AgentConfig, policy: files.PathPolicy,
    *, secrets: Secrets | None = None, **shell_options: Any,
) -> dict[str, Any]:
    owner_policy.check_call(
        tool,
        arguments,
        disabled=config.disabled_tools,
        read_only=config.read_only,
        command_prefixes=config.command_prefixes,
    )
    if tool == "run_shell_command":
        cwd = arguments.get("working_dir") or config.home
        cwd = policy.home if cwd == "~" else os.path.expanduser(cwd) if cwd.startswith("~/") else cwd
        return shell.run(
            arguments["command"],
            shell=config.shell,
            cwd=cwd,
            timeout_seconds=timeout_seconds,
            max_output_bytes=config.max_output_bytes,
            kill_grace_seconds=config.kill_grace_seconds,
            secrets=secrets,
            keep_background=arguments.get("keep_background") is True,
            **shell_options,
        )
    if tool == "read_file":
        return files.read_file(
            policy, arguments["path"], max_bytes=config.max_read_bytes, offset=arguments.get("offset"), limit=arguments.get("limit"),
            tail=arguments.get("tail"),
        )
    if tool in checkpoints.TOOLS:
        return checkpoints.Store(os.path.join(config.state_dir, "checkpoints")).guarded(
            policy, tool, arguments, lambda: _change(tool, arguments, config, policy)
        )
    if tool == "list_checkpoints":
        return checkpoints.Store(os.path.join(config.state_dir, "checkpoints")).list(policy, arguments.get("path"))
    if tool == "undo_change":
        return checkpoints.Store(os.path.join(config.state_dir, "checkpoints")).undo(policy, arguments["checkpoint_id"])
    if tool == "search":
        return search.search(
            policy, arguments, timeout_seconds=timeout_seconds, cancel=shell_options.get("cancel"), on_tick=shell_options.get("on_tick")
        )
    if tool == "list_directory":
        return files.list_directory(policy, arguments["path"])
    if tool in FILE_OPERATIONS:
        return FILE_OPERATIONS[tool](policy, arguments, config)
    raise OperationError("unknown_tool", f"this agent does not know the tool {tool!r}; upgrade it")


def _change(tool: str, arguments: dict[str, Any], config: AgentConfig, policy: files.PathPolicy) -> dict[str, Any]:
    """A changing file tool; agent/checkpoints.py keeps what it replaces."""
    if tool == "write_file":
        return writing.write_file(
            policy, arguments["path"], arguments["content"], max_bytes=MAX_WRITE_BYTES,
            mode=arguments.get("mode", "rewrite"), create_dirs=bool(arguments.get("create_dirs", False)),
        )
    if tool == "edit_file":
        return edit.edit_file(policy, arguments["path"], arguments["edits"], dry_run=bool(arguments.get("dry_run", False)))
    return FILE_OPERATIONS[tool](policy, arguments, config)


def outcome(
    tool: str, arguments: dict[str, Any], timeout_seconds: float, config: AgentConfig, policy: files.PathPolicy,
    *, secrets: Secrets | None = None, **shell_options: Any,
) -> dict[str, Any]:
    """The body to post as the command's result, with every secret masked (agent/masking.py) and
    counted in `result.masked`. `shell_options` go to shell.run (spool, cancel, on_start)."""
    secrets = secrets if secrets is not None else Secrets(config.secret_values)
    body = _outcome(tool, arguments, timeout_seconds, config, policy, secrets=secrets, **shell_options)
    body, count = secrets.mask_object(body)
    if count:
        result = body.setdefault("result", {})
        result["masked"] = result.get("masked", 0) + count
    return body


def _outcome(tool: str, arguments: dict[str, Any], timeout_seconds: float, config: AgentConfig, policy: files.PathPolicy, **shell_options: Any) -> dict[str, Any]:
    try:
        result = perform(tool, arguments, timeout_seconds, config, policy, **shell_options)
    except OperationError as error:
        return {"status": "failed", "error": {"code": error.code, "message": error.message}}
    except (KeyError, TypeError) as error:
        return {"status": "failed", "error": {"code": "invalid_arguments", "message": f"bad arguments: {error}"}}
    except (OSError, ValueError) as error:
        # A symlink loop, an embedded NUL, a vanished file: report it rather than lose the command.
        message = f"{error.strerror}: {error.filename}" if isinstance(error, OSError) and error.strerror else str(error)
        return {"status": "failed", "error": {"code": "io_error", "message": message}}
    if result.get("cancelled"):
        return {"status": "cancelled", "result": result, "exit_code": result.get("exit_code"),
                "error": {"code": "cancelled", "message": "cancelled: its process group was ended"}}
    if result.get("timed_out"):
        return {"status": "timed_out", "result": result, "exit_code": result.get("exit_code")}
    return {"status": "succeeded", "result": result, "exit_code": result.get("exit_code")}
