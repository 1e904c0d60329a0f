"""The owner's credential never reaches a transcript: a prompt-injected model that runs `env`, reads the
agent's `/proc/$PPID/environ`, greps its state folder or its `.env` gets `***` where a secret was, and
the file tools refuse the files outright.

Real gunicorn server, real agent processes (throwaway HOME), the official MCP client. Two agents: one
configured by its environment, one by an env file; each with a proxy password and an owner's
MASK_VALUES. The agent tokens the server issued are found by signing candidates for every second of
the enrolment window with the server's known key: exactly one of them is the live one.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
import requests

from tests.harness import Agent, Server
from tests.mcp_client import with_session

SIGNING_KEY = "leak-test-signing-key-0123456789abcdef"
PROXY_PASSWORD = "Pr0xy-Pass-4242"
FILE_PROXY_PASSWORD = "f1le-pr@xy-pass"  # percent-encoded in the URL
DB_PASSWORD = "owner-db-password-7781"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server"), env={"SIGNING_KEYS": SIGNING_KEY}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agents(server, tmp_path_factory):
    """(agent, env file or None); enrolled between `started` and `enrolled`."""
    workdir = tmp_path_factory.mktemp("agents")
    started = time.time()
    by_env = Agent(server, workdir, "by-env", env={
        "HTTPS_PROXY": f"http://proxyuser:{PROXY_PASSWORD}@127.0.0.1:9",
        "MASK_VALUES": f"{DB_PASSWORD},another-owner-secret",
        "DB_PASSWORD": DB_PASSWORD,
        "COPY_OF_TOKEN": f"x{server.token}x",
    })
    by_file = Agent(server, workdir, "by-file")
    env_file = by_file.home / "agent.env"
    env_file.write_text(
        f"RELAY_URL={server.url}\nAUTH_TOKEN='{server.token}'\n"
        f"https_proxy=http://fileuser:{FILE_PROXY_PASSWORD.replace('@', '%40')}@127.0.0.1:9\n"
        f"MASK_VALUES={DB_PASSWORD}\n"
    )
    for name in ("RELAY_URL", "AUTH_TOKEN"):
        del by_file.env[name]
    by_file.env["CODE_REMOTE_ENV_FILE"] = str(env_file)
    by_env.start()
    by_file.start()
    enrolled = time.time()
    yield {"by-env": (by_env, None), "by-file": (by_file, env_file)}, (started, enrolled)
    by_env.stop()
    by_file.stop()


def _candidates(machine: str, window: tuple[float, float]) -> list[str]:
    """Every token the server could have issued to `machine` in `window` (first generations)."""
    from itsdangerous import URLSafeTimedSerializer

    from web.security.auth import AGENT_AUDIENCE, SIGNING_SALT

    tokens = []
    for second in range(int(window[0]) - 1, int(window[1]) + 2):
        serializer = URLSafeTimedSerializer(SIGNING_KEY, salt=SIGNING_SALT)
        serializer.signer_kwargs = {}
        signer = serializer.make_signer(SIGNING_SALT)
        for generation in range(0, 4):
            payload = serializer.dump_payload({"aud": AGENT_AUDIENCE, "m": machine, "g": generation})
            signer.get_timestamp = lambda second=second: second
            tokens.append(signer.sign(payload).decode())
    return tokens


def _calls(agent: Agent, env_file, state_dir: str) -> list[tuple[str, dict]]:
    shell = [
        "env",
        "printenv AUTH_TOKEN; echo \"[$AUTH_TOKEN] [$AGENT_ENROLMENT_SECRET] [$COPY_OF_TOKEN]\"; echo \"$HTTPS_PROXY $https_proxy\"",
        "tr '\\0' '\\n' < /proc/$PPID/environ",
        "cat /proc/$PPID/environ /proc/$PPID/cmdline",
        f"grep -ra . {state_dir} || true",
        "echo \"db=$DB_PASSWORD\"; test -n \"$DB_PASSWORD\" && echo the-command-still-has-it",
        # The environ block read two bytes at a time with pauses: a secret reaches the agent split.
        f"{sys.executable} -c \"import sys,time; d=open('/proc/%d/environ' % __import__('os').getppid(),'rb').read(); "
        "[(sys.stdout.buffer.write(d[i:i+2]), sys.stdout.flush(), time.sleep(0.001)) for i in range(0, len(d), 2)]\"",
    ]
    if env_file is not None:
        shell += [
            f"cat {env_file}",
            f"head -c 40 {env_file}; sleep 0.3; tail -c +41 {env_file}",
            f"base64 -w0 {env_file} | base64 -d",
            f"cp {env_file} ~/copied.txt && echo copied",
        ]
    calls = [("run_shell_command", {"command": c, "machine": agent.name}) for c in shell]
    if env_file is not None:
        calls += [
            ("read_file", {"path": str(env_file), "machine": agent.name}),
            ("read_file", {"path": "~/copied.txt", "machine": agent.name}),
            ("list_directory", {"path": "~", "machine": agent.name}),
        ]
    calls += [
        ("list_directory", {"path": state_dir, "machine": agent.name}),
        ("read_file", {"path": "/proc/self/environ", "machine": agent.name}),
    ]
    return calls


def test_no_secret_reaches_any_answer_or_the_audit(server, agents):
    machines, window = agents
    secrets = {
        "owner token": server.token, "proxy password": PROXY_PASSWORD, "file proxy password": FILE_PROXY_PASSWORD,
        "encoded file proxy password": FILE_PROXY_PASSWORD.replace("@", "%40"), "owner MASK_VALUES": DB_PASSWORD,
    }
    answers: dict[str, dict] = {}

    async def run(session):
        for name, (agent, env_file) in machines.items():
            state_dir = str(agent.home / ".local" / "state" / "code-remote")
            for index, (tool, arguments) in enumerate(_calls(agent, env_file, state_dir)):
                answers[f"{name}#{index} {tool} {arguments.get('command') or arguments.get('path')}"] = await session.call_tool(tool, arguments)
            # The token this agent holds: the one candidate its shell prints masked.
            # (Made by the command itself, so that the audit's copy of the arguments holds no token.)
            candidates = _candidates(name, window)
            script = f"import sys; sys.path.insert(0, {os.getcwd()!r}); from tests.e2e.test_secret_leak import _candidates; print(*_candidates({name!r}, {window!r}), sep=chr(10))"
            printed = await session.call_tool("run_shell_command", {"command": f"{sys.executable} -c \"{script}\"", "machine": name})
            lines = printed["text"].split("\n")[: len(candidates)]
            live = [token for token, line in zip(candidates, lines, strict=True) if line == "***"]
            assert len(live) == 1, printed["text"][:2000]
            secrets[f"{name} agent token"] = live[0]
            assert "masked" in printed["text"]

    with_session("http", server.url + "/mcp", server.token, run, overall_timeout=180)
    audit = json.dumps(requests.get(server.url + "/api/commands", params={"limit": 500}, headers=server.headers(), timeout=10).json())
    for what, value in secrets.items():
        for call, answer in answers.items():
            assert value not in json.dumps(answer["raw"] if "raw" in answer else answer["text"], default=str), (what, call)
            assert value not in answer["text"], (what, call)
        assert value not in audit, what

    env_answer = next(a["text"] for c, a in answers.items() if c.startswith("by-env#0 "))
    assert "AUTH_TOKEN" not in env_answer and "COPY_OF_TOKEN" not in env_answer, "the credential variables are scrubbed"
    assert "HTTPS_PROXY=http://proxyuser@127.0.0.1:9" in env_answer, "the proxy stays, without its password"
    assert "DB_PASSWORD=***" in env_answer and "masked" in env_answer, "the owner's value stays for commands, masked in output"
    db = next(a["text"] for c, a in answers.items() if c.startswith("by-env#5 "))
    assert "db=***" in db and "the-command-still-has-it" in db
    environ = next(a["text"] for c, a in answers.items() if c.startswith("by-env#2 "))
    assert "AUTH_TOKEN=" not in environ or "AUTH_TOKEN=***" in environ
    catted = next(a["text"] for c, a in answers.items() if c.startswith("by-file#7 "))
    assert "AUTH_TOKEN='***'" in catted and "masked" in catted and "RELAY_URL=" in catted
    split = next(a["text"] for c, a in answers.items() if c.startswith("by-file#8 "))
    assert "AUTH_TOKEN='***'" in split, "a secret split across two reads is masked whole"
    for call, answer in answers.items():
        if " read_file " in call or " list_directory " in call:
            if "agent.env" in call or "code-remote" in call:
                assert answer["is_error"] and "deny-list" in answer["text"], (call, answer["text"])
            if "/proc/self/environ" in call:
                assert answer["is_error"] and "outside the allowed roots" in answer["text"]
    copied = next(a for c, a in answers.items() if "copied.txt" in c and " read_file " in c)
    assert not copied["is_error"] and "AUTH_TOKEN='***'" in copied["text"] and "masked" in copied["text"]
