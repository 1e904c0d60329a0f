"""`python -m agent doctor` against real servers, proxies and certificates, run as a user runs it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from agent import VERSION
from tests.harness import PYTHON, ROOT, base_env
from tests.proxies import Nginx, Squid, agent_network_env


@pytest.fixture(scope="module")
def front(live_server, certs, tmp_path_factory):
    proxy = Nginx(tmp_path_factory.mktemp("nginx"), live_server.port, certs).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def squid(front, tmp_path_factory):
    proxy = Squid(tmp_path_factory.mktemp("squid"), front.port).start()
    yield proxy
    proxy.stop()


def doctor(tmp_path: Path, relay_url: str, token: str, **network: str) -> tuple[int, str]:
    # One state folder for every run, as on one machine: it holds the key the name 'doc-box' is bound to.
    state = tmp_path.parent / "doc-box-state"
    env = base_env(RELAY_URL=relay_url, AUTH_TOKEN=token, MACHINE_NAME="doc-box", HOME=str(tmp_path),
                   CODE_REMOTE_ENV_FILE=str(tmp_path / "none.env"), CODE_REMOTE_STATE_DIR=str(state), **agent_network_env(**network))
    done = subprocess.run([PYTHON, "-m", "agent", "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout


def verdicts(output: str) -> dict[str, str]:
    """step -> ok/warn/FAIL/skip, from the one-line verdicts."""
    found = {}
    for line in output.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ("ok", "warn", "FAIL", "skip"):
            found[parts[1]] = parts[0]
    return found


def test_doctor_passes_every_step_against_a_healthy_server(live_server, tmp_path):
    code, out = doctor(tmp_path, live_server.url, live_server.token)
    assert code == 0, out
    assert verdicts(out) == {"config": "ok", "dns": "ok", "tcp": "ok", "clock": "ok", "token": "ok", "poll": "ok"}
    assert f"$ curl -v '{live_server.url}/health'" in out
    assert "verdict: all checks passed" in out
    assert live_server.token not in out, "the token is never printed"
    machine = live_server.machines()["doc-box"]
    assert machine["agent_version"] == VERSION and str(tmp_path) in machine["allowed_roots"], "registered as the agent would"


def test_doctor_prints_curl_commands_that_work_as_printed(live_server, tmp_path):
    code, out = doctor(tmp_path, live_server.url, live_server.token)
    assert code == 0, out
    commands = [line.strip().removeprefix("$ ") for line in out.splitlines() if line.strip().startswith("$ curl") or line.strip().startswith("$ TOKEN=")]
    assert len(commands) == 3, commands  # dns (/health), token (/api/machines), poll (register + poll)
    env = base_env(AUTH_TOKEN=live_server.token, HOME=str(tmp_path))
    for command in commands:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        assert re.search(r"< HTTP/1.1 (200|204)", done.stderr), f"{command}\n{done.stderr}"


def test_doctor_passes_through_an_authenticating_proxy_and_a_private_ca(live_server, squid, front, certs, tmp_path):
    code, out = doctor(tmp_path, front.url, live_server.token, proxy=squid.url, ca_bundle=str(certs.ca))
    assert code == 0, out
    assert verdicts(out) == {"config": "ok", "dns": "ok", "tcp": "ok", "proxy": "ok", "tls": "ok", "clock": "ok", "token": "ok", "poll": "ok"}
    assert "issued by 'CN=Code Remote Test CA'" in out
    assert squid.password not in out and "agent:***@" in out


def test_doctor_names_a_wrong_token(live_server, tmp_path):
    code, out = doctor(tmp_path, live_server.url, "not-the-server-token-at-all")
    assert code == 1
    assert verdicts(out)["token"] == "FAIL" and verdicts(out)["poll"] == "skip"
    assert "the server refused AUTH_TOKEN" in out
    assert '-H "Authorization: Bearer $AUTH_TOKEN"' in out


def test_doctor_names_a_proxy_that_refuses_the_credentials(live_server, squid, front, certs, tmp_path):
    wrong = f"http://agent:wrong-password@127.0.0.1:{squid.port}"
    code, out = doctor(tmp_path, front.url, live_server.token, proxy=wrong, ca_bundle=str(certs.ca))
    assert code == 1
    assert verdicts(out)["proxy"] == "FAIL" and verdicts(out)["tls"] == "skip"
    assert "407 Proxy Authentication Required" in out and "wants credentials" in out
    assert "wrong-password" not in out


def test_doctor_names_the_issuer_of_a_certificate_it_cannot_verify(live_server, front, tmp_path):
    code, out = doctor(tmp_path, front.url, live_server.token)  # the system store only: no private CA
    assert code == 1
    assert verdicts(out)["tls"] == "FAIL" and verdicts(out)["token"] == "skip"
    tls_line = next(line for line in out.splitlines() if line.startswith("FAIL  tls"))
    assert "unable to get local issuer certificate" in tls_line
    assert "issued by 'CN=Code Remote Test CA'" in tls_line and "set CA_BUNDLE" in tls_line


def test_doctor_names_a_server_that_is_not_listening(tmp_path):
    from tests.harness import free_port

    code, out = doctor(tmp_path, f"http://127.0.0.1:{free_port()}", "x" * 20)
    assert code == 1 and verdicts(out)["tcp"] == "FAIL" and "Connection refused" in out
