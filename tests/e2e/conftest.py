"""Fixtures shared by end-to-end tests: one real server with its agent for a module, and the
certificates of the proxy and TLS tests."""

from __future__ import annotations

import pytest

from tests.harness import Agent, Server
from tests.proxies import Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certificates:
    """A private CA and a server certificate for 127.0.0.1 that it signs."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(live_server) -> Server:
    """The module's real server (tests/conftest.py: live_server); a module may define its own."""
    return live_server


@pytest.fixture(scope="module")
def box(live_agent) -> Agent:
    """The module's real agent, machine 'box', polling `server`."""
    return live_agent


@pytest.fixture(scope="module")
def ro(server, tmp_path_factory) -> Agent:
    """A second agent on `server`, machine 'ro', with READ_ONLY=1."""
    agent = Agent(server, tmp_path_factory.mktemp("ro"), "ro", env={"READ_ONLY": "1"}).start()
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def stack(live_server, live_agent) -> tuple[Server, Agent]:
    """The module's real server and its agent 'box', as a pair."""
    return live_server, live_agent
