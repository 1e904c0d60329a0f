"""Shared fixtures: an in-process app on a fresh SQLite file, and real server + agent processes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from migrations import upgrade
from tests import database
from tests.harness import TOKEN, Agent, Server
from web import create_app
from web.config import Config


@pytest.fixture(scope="session", autouse=True)
def test_database_cluster():
    """With CODE_REMOTE_TEST_DATABASE=postgresql, stop the throwaway cluster when the run ends."""
    yield
    database.shutdown()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(auth_token=TOKEN, database_url=database.fresh_url(tmp_path), poll_timeout_seconds=2.0)


@pytest.fixture
def app(config: Config):
    app = create_app(config)
    from web.models import db

    with db.connection_context():
        upgrade(db.obj)
    yield app
    app.extensions["code_remote"].bus.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def owner_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Server:
    """One real gunicorn+gevent server per test module."""
    server = Server(tmp_path_factory.mktemp("server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_agent(live_server: Server, tmp_path_factory) -> Agent:
    """One real agent, machine 'box', polling `live_server`."""
    agent = Agent(live_server, tmp_path_factory.mktemp("agent"), "box").start()
    yield agent
    agent.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Server:
    """A server of the test's own, for tests that restart or break it."""
    server = Server(tmp_path / "server").start()
    yield server
    server.stop()


def replace_config(config: Config, **changes) -> Config:
    return dataclasses.replace(config, **changes)
