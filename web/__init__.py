"""Code Remote's server: a Flask app that relays MCP tool calls to agents on users' machines.

`create_app()` is the only place that knows every layer: it opens the database, builds the services
(relay, tools, MCP dispatcher, sessions, agent tokens) and registers one blueprint per surface.
"""

from __future__ import annotations

import dataclasses
import logging

from flask import Flask

from web import agent_api, api, errors
from web.bus import Bus, open_bus
from web.config import Config
from web.console import metrics
from web.console import views as console
from web.console.process_stats import ProcessStats
from web.http import install_error_handlers, require_host
from web.mcp import sse, streamable
from web.mcp.protocol import Dispatcher
from web.mcp.session import MemorySessions, SessionStore
from web.mcp.shared import SharedSessions
from web.mcp.tools import ToolBox
from web.models import open_database
from web.oauth import views as oauth
from web.oauth.store import OAuthStore
from web.relay.relay import Relay
from web.security import netpolicy
from web.security.auth import AgentTokens, Credentials
from web.security.shared_throttle import SharedThrottle


@dataclasses.dataclass
class Services:
    """Everything a request handler may need, built once per app."""

    config: Config
    bus: Bus
    relay: Relay
    toolbox: ToolBox
    dispatcher: Dispatcher
    sessions: SessionStore
    agent_tokens: AgentTokens
    oauth: OAuthStore
    credentials: Credentials
    registrations: netpolicy.Throttle
    process_stats: ProcessStats
    draining: bool = False

    def drain(self) -> None:
        """This process was told to stop (SIGTERM: a deploy, a restart, a scale-down). It takes no
        new held work: its held polls end now, so agents poll another process, and its streams end,
        so clients reconnect elsewhere (a Streamable HTTP session goes on there; an SSE session
        cannot outlive its stream). Tool calls in progress finish here, within gunicorn's
        graceful_timeout; with PostgreSQL their answers can be resumed elsewhere if they do not."""
        self.draining = True
        self.relay.leases.drain()
        self.sessions.drain()


def _memory_throttle(limit: int, window_seconds: float = netpolicy.WINDOW_SECONDS, *, scope: str, **kwargs) -> netpolicy.Throttle:
    return netpolicy.Throttle(limit, window_seconds, **kwargs)


def build_services(config: Config) -> Services:
    bus = open_bus(config.database_url)
    relay = Relay(config, bus)
    toolbox = ToolBox(relay)
    dispatcher = Dispatcher(toolbox)
    if bus.shared:  # several server processes: every one of them must know every session
        sessions = SharedSessions(
            bus, config.session_idle_seconds, config.max_sessions_per_credential, heartbeat_seconds=config.heartbeat_seconds
        )
        sessions.finish = dispatcher.finish
    else:
        sessions = MemorySessions(config.session_idle_seconds, config.max_sessions_per_credential)
    # Several processes count one limit together in the database; one process counts in memory.
    throttle = SharedThrottle if bus.shared else _memory_throttle
    oauth_store = OAuthStore(
        code_seconds=config.oauth_code_seconds,
        access_seconds=config.oauth_access_token_seconds,
        refresh_seconds=config.oauth_refresh_token_seconds,
        registrations_per_hour_total=config.client_registrations_total_per_hour,
        metadata_private_networks=config.client_metadata_private_networks,
    )
    return Services(
        config=config,
        bus=bus,
        relay=relay,
        toolbox=toolbox,
        dispatcher=dispatcher,
        sessions=sessions,
        agent_tokens=AgentTokens(config.agent_signing_keys, config.agent_token_max_age_seconds),
        oauth=oauth_store,
        credentials=Credentials(
            auth_token=config.auth_token,
            enrolment_secret=config.agent_enrolment_secret,
            oauth=oauth_store,
            throttle=throttle(config.auth_failures_per_minute, scope="auth"),
        ),
        registrations=throttle(
            config.client_registrations_per_hour, 3600, scope="registrations", what="client registrations", code="too_many_registrations"
        ),
        process_stats=ProcessStats(held_polls=relay.held_polls),
    )


def create_app(config: Config | None = None) -> Flask:
    """Build the WSGI app from `config` (default: the environment)."""
    config = config or Config.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    open_database(config.database_url)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_result_bytes
    app.extensions["code_remote"] = services = build_services(config)
    services.bus.start()
    install_error_handlers(app)
    app.before_request(require_host)
    netpolicy.install(app, trusted_proxy_hops=config.trusted_proxy_hops, agent_networks=config.agent_allowed_networks)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(sse.bp)
    app.register_blueprint(streamable.bp)
    app.register_blueprint(agent_api.bp)
    metrics.install(app)
    console.install(app)
    return app
