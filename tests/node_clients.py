"""Run the pinned third-party (npm) MCP clients from pytest.  Stdlib only.

The clients live in tests/node/ (package.json pins the versions); install once with

    npm install --prefix tests/node        # from the repo root; no lockfile is written

Clients:
  * MCP Inspector CLI (@modelcontextprotocol/inspector-cli) -> `inspector_cli()`: one request
    per process, returns the parsed JSON result.
  * mcp-remote (stdio <-> remote proxy used by Claude Desktop) -> `mcp_remote_params()` /
    `mcp_remote_cmd()`: a stdio server command for the Python `mcp` SDK's `stdio_client`.
  * conformance suite (@modelcontextprotocol/conformance) -> `run_conformance()` /
    `conformance_cmd()`: Streamable HTTP only, cannot send custom headers.

Every node process gets a throwaway HOME (and MCP_REMOTE_CONFIG_DIR inside it), so
nothing is written under the real home directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

NODE_DIR = Path(__file__).resolve().parent / "node"
INSTALL_HINT = (
    "run `npm install --prefix tests/node` from the repository root "
    "(or `cd tests/node && npm install`); it needs Node >= 20 and the npm registry"
)

INSPECTOR_BUILD = "@modelcontextprotocol/inspector-cli/build"
INSPECTOR_ENTRY = INSPECTOR_BUILD + "/index.js"
MCP_REMOTE_ENTRY = "mcp-remote/dist/proxy.js"
CONFORMANCE_ENTRY = "@modelcontextprotocol/conformance/dist/index.js"
# Makes conformance (built against Node 22's fs.globSync) load on Node 20; no-op on Node >= 22.
NODE20_SHIM = NODE_DIR / "node20-shim.mjs"

DEFAULT_TIMEOUT = 60.0


class NodeClientsMissing(RuntimeError):
    """node, or tests/node/node_modules, is not installed."""


class NodeClientError(RuntimeError):
    """A node client exited non-zero, timed out, or printed something unparsable."""

    def __init__(self, message: str, *, argv: Sequence[str], returncode: int | None,
                 stdout: str = "", stderr: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"{message}\n  argv: {self.argv}\n  exit: {returncode}\n"
            f"  stderr: {stderr.strip()[-2000:]}\n  stdout: {stdout.strip()[-2000:]}"
        )


# --------------------------------------------------------------------------- locating things


def node_exe() -> str:
    """Absolute path of the `node` binary (Node >= 20.6 needed for the conformance shim)."""
    exe = shutil.which("node")
    if not exe:
        raise NodeClientsMissing("`node` is not on PATH; install Node >= 20 (Debian: apt-get install nodejs)")
    return exe


def node_modules_dir() -> Path:
    """tests/node/node_modules, after checking that all three clients are installed."""
    nm = NODE_DIR / "node_modules"
    missing = [rel for rel in (INSPECTOR_ENTRY, MCP_REMOTE_ENTRY, CONFORMANCE_ENTRY) if not (nm / rel).is_file()]
    if missing:
        raise NodeClientsMissing(f"npm MCP clients are not installed (missing {nm / missing[0]}); {INSTALL_HINT}")
    return nm


def _entry(rel: str) -> str:
    return str(node_modules_dir() / rel)


def isolated_env(home: str | os.PathLike[str], extra: Mapping[str, str] | None = None, *,
                 inherit: bool = True) -> dict[str, str]:
    """Environment for a node client: HOME and every config/cache dir point inside `home`.

    inherit=True starts from os.environ (for subprocess); inherit=False returns only the
    overrides (for mcp's StdioServerParameters.env, which is merged over PATH/HOME/... anyway).
    """
    home = str(home)
    env: dict[str, str] = dict(os.environ) if inherit else {}
    env.update({
        "HOME": home,
        "MCP_REMOTE_CONFIG_DIR": os.path.join(home, ".mcp-auth"),  # mcp-remote's token/debug-log dir
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
        "npm_config_cache": os.path.join(home, ".npm"),
        "NO_UPDATE_NOTIFIER": "1",
    })
    if inherit:
        env.pop("NODE_OPTIONS", None)  # a stray --require/--inspect from the caller would break the clients
    if extra:
        env.update(extra)
    return env


def _run(argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str],
         timeout: float) -> subprocess.CompletedProcess[str]:
    """subprocess.run with a hard timeout that kills the child's whole process group."""
    proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        raise NodeClientError(f"timed out after {timeout}s", argv=argv, returncode=None,
                              stdout=out or "", stderr=err or "") from None
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


class _Home:
    """Use the caller's home dir, or a fresh temp one removed afterwards."""

    def __init__(self, home: str | os.PathLike[str] | None) -> None:
        self._tmp = None if home is not None else tempfile.TemporaryDirectory(prefix="node-home-")
        self.path = str(home) if home is not None else self._tmp.name  # type: ignore[union-attr]

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _header_args(flag: str, headers: Mapping[str, str] | None) -> list[str]:
    out: list[str] = []
    for name, value in (headers or {}).items():
        out += [flag, f"{name}: {value}"]
    return out


# --------------------------------------------------------------------------- MCP Inspector CLI


def inspector_cli_cmd(url: str, *args: str, transport: str | None = None,
                      headers: Mapping[str, str] | None = None,
                      tool_args: Mapping[str, Any] | None = None) -> list[str]:
    """argv for the Inspector CLI; must be run with cwd=inspector_cli_cwd().

    transport: "sse" (legacy HTTP+SSE, URL = the GET /sse endpoint) or "http" (Streamable HTTP;
    "streamable-http" accepted). None lets the CLI guess from the path (/mcp -> http, else sse).
    args: raw CLI args, e.g. "--method", "tools/list" or "--method", "tools/call", "--tool-name", "echo".
    tool_args: values are JSON-encoded, because the CLI JSON-parses `k=v` (text=123 would be a number).
    The URL is always placed first: --header/--tool-arg are variadic and would swallow it.
    """
    argv = [node_exe(), _entry(INSPECTOR_ENTRY), url]
    if transport is not None:
        t = {"streamable-http": "http", "streamablehttp": "http"}.get(transport, transport)
        if t not in ("sse", "http"):
            raise ValueError(f"transport must be 'sse' or 'http', not {transport!r}")
        argv += ["--transport", t]
    argv += list(args)
    for key, value in (tool_args or {}).items():
        argv += ["--tool-arg", f"{key}={json.dumps(value)}"]
    argv += _header_args("--header", headers)
    return argv


def inspector_cli_cwd() -> str:
    """The CLI finds its package.json via cwd: it only works when run from its build/ dir."""
    return _entry(INSPECTOR_BUILD)


def inspector_cli(url: str, *args: str, transport: str | None = None,
                  headers: Mapping[str, str] | None = None, tool_args: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None, home: str | os.PathLike[str] | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Run one Inspector CLI request and return its parsed JSON result (stdout).

    Raises NodeClientError on a non-zero exit (connect/auth/protocol failure; message on
    stderr) or on timeout.  A tool result with isError: true still exits 0: check
    result["isError"].  `env` entries are added on top of the isolated environment.
    """
    argv = inspector_cli_cmd(url, *args, transport=transport, headers=headers, tool_args=tool_args)
    with _Home(home) as h:
        proc = _run(argv, cwd=inspector_cli_cwd(), env=isolated_env(h, env), timeout=timeout)
    if proc.returncode != 0:
        raise NodeClientError("inspector-cli failed", argv=argv, returncode=proc.returncode,
                              stdout=proc.stdout, stderr=proc.stderr)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise NodeClientError("inspector-cli printed no JSON", argv=argv, returncode=proc.returncode,
                              stdout=proc.stdout, stderr=proc.stderr) from None


def inspector_list_tools(url: str, **kw: Any) -> list[dict[str, Any]]:
    """tools/list via the Inspector CLI; returns the list of tool dicts."""
    return inspector_cli(url, "--method", "tools/list", **kw)["tools"]


def inspector_call_tool(url: str, name: str, arguments: Mapping[str, Any] | None = None,
                        **kw: Any) -> dict[str, Any]:
    """tools/call via the Inspector CLI; returns the CallToolResult dict (check ["isError"])."""
    return inspector_cli(url, "--method", "tools/call", "--tool-name", name, tool_args=arguments or {}, **kw)


# --------------------------------------------------------------------------- mcp-remote

MCP_REMOTE_TRANSPORTS = ("http-only", "sse-only", "http-first", "sse-first")


def mcp_remote_cmd(url: str, *, transport: str | None = None, headers: Mapping[str, str] | None = None,
                   silent: bool = False, extra_args: Iterable[str] = ()) -> list[str]:
    """argv for mcp-remote: a stdio MCP server that proxies to `url`.

    transport: None (= mcp-remote's default http-first: POST url as Streamable HTTP, fall back
    to SSE on 404/405) or one of MCP_REMOTE_TRANSPORTS.  Plain http:// is only accepted for
    localhost/127.0.0.1 (anything else, e.g. [::1], needs extra_args=["--allow-http"]).
    headers: sent on every request (values may use ${ENV_VAR}, expanded by mcp-remote).
    Never add a second positional argument: mcp-remote takes it as the OAuth callback port.
    Run it with env=isolated_env(home) (see mcp_remote_params) so ~/.mcp-auth stays in a temp dir.
    """
    argv = [node_exe(), _entry(MCP_REMOTE_ENTRY), url]
    if transport is not None:
        if transport not in MCP_REMOTE_TRANSPORTS:
            raise ValueError(f"transport must be one of {MCP_REMOTE_TRANSPORTS}, not {transport!r}")
        argv += ["--transport", transport]
    argv += _header_args("--header", headers)
    if silent:
        argv.append("--silent")
    argv += list(extra_args)
    return argv


def mcp_remote_params(url: str, home: str | os.PathLike[str], *, transport: str | None = None,
                      headers: Mapping[str, str] | None = None, silent: bool = False,
                      extra_args: Iterable[str] = (), env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """kwargs for mcp.client.stdio.StdioServerParameters, e.g.

        params = StdioServerParameters(**mcp_remote_params(url, tmp_path, transport="http-only"))
        async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
    """
    argv = mcp_remote_cmd(url, transport=transport, headers=headers, silent=silent, extra_args=extra_args)
    return {"command": argv[0], "args": argv[1:], "env": isolated_env(home, env, inherit=False),
            "cwd": str(home)}


# --------------------------------------------------------------------------- conformance


def conformance_cmd(url: str | None = None, scenario: str | None = None, *, suite: str | None = None,
                    output_dir: str | os.PathLike[str] | None = None, spec_version: str | None = None,
                    expected_failures: str | os.PathLike[str] | None = None, verbose: bool = False,
                    command: str = "server", extra_args: Iterable[str] = ()) -> list[str]:
    """argv for the conformance CLI (`server` mode by default; command="list" lists scenarios).

    url must be the Streamable HTTP endpoint (e.g. http://127.0.0.1:PORT/mcp).  No scenario and
    no suite = the "active" suite.  Results go to output_dir/<server-SCENARIO-TIMESTAMP>/checks.json
    (default ./results, so run it with a temp cwd).  Env: isolated_env(home).
    """
    argv = [node_exe(), "--import", NODE20_SHIM.as_uri(), _entry(CONFORMANCE_ENTRY), command]
    if command == "server":
        if not url:
            raise ValueError("conformance server needs url")
        argv += ["--url", url]
        if scenario:
            argv += ["--scenario", scenario]
        if suite:
            argv += ["--suite", suite]
        if output_dir is not None:
            argv += ["--output-dir", str(output_dir)]
        if expected_failures is not None:
            argv += ["--expected-failures", str(expected_failures)]
        if verbose:
            argv.append("--verbose")
    if spec_version:
        argv += ["--spec-version", spec_version]
    return argv + list(extra_args)


@dataclasses.dataclass
class ConformanceResult:
    returncode: int          # 0 = every scenario passed (or failed only as listed in expected-failures)
    checks: dict[str, list[dict[str, Any]]]  # scenario -> its checks.json (status SUCCESS/FAILURE/WARNING/INFO)
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failures(self) -> list[str]:
        """'scenario/check-id: errorMessage' for every FAILURE check."""
        return [f"{sc}/{c.get('id')}: {c.get('errorMessage', '')}"
                for sc, cs in self.checks.items() for c in cs if c.get("status") == "FAILURE"]


def run_conformance(url: str, scenario: str | None = None, *, suite: str | None = None,
                    spec_version: str | None = None, expected_failures: str | os.PathLike[str] | None = None,
                    home: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                    timeout: float = 180.0) -> ConformanceResult:
    """Run conformance server scenario(s) against `url`; never raises on a failing check
    (look at .ok / .failures()), only on timeout."""
    with _Home(home) as h:
        out_dir = Path(h) / "conformance-results"
        argv = conformance_cmd(url, scenario, suite=suite, output_dir=out_dir, spec_version=spec_version,
                               expected_failures=expected_failures)
        proc = _run(argv, cwd=h, env=isolated_env(h, env), timeout=timeout)
        checks: dict[str, list[dict[str, Any]]] = {}
        for f in sorted(out_dir.glob("*/checks.json")):
            name = re.sub(r"^server-|-\d{4}-\d\d-\d\dT[\d-]+Z$", "", f.parent.name)
            checks[name] = json.loads(f.read_text())
    return ConformanceResult(proc.returncode, checks, proc.stdout, proc.stderr)


def conformance_scenarios(kind: str = "server", *, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Scenario names from `conformance list --server|--client`."""
    if kind not in ("server", "client"):
        raise ValueError("kind must be 'server' or 'client'")
    argv = conformance_cmd(command="list", extra_args=[f"--{kind}"])
    with _Home(None) as h:
        proc = _run(argv, cwd=h, env=isolated_env(h), timeout=timeout)
    if proc.returncode != 0:
        raise NodeClientError("conformance list failed", argv=argv, returncode=proc.returncode,
                              stdout=proc.stdout, stderr=proc.stderr)
    return re.findall(r"^\s+- (\S+)", proc.stdout, flags=re.M)
