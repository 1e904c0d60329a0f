"""The agent's HTTP client: one `requests.Session`, explicit timeouts on every call, tokens only in
the Authorization header. `requests` honours HTTPS_PROXY/NO_PROXY and REQUESTS_CA_BUNDLE by itself.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from agent import VERSION
from agent.config import AgentConfig

log = logging.getLogger(__name__)
REREGISTER_CODES = frozenset({"token_expired", "token_invalid", "token_revoked", "token_wrong_audience", "missing_token"})


class RelayError(Exception):
    """The server answered with an error (status, code and message from its JSON body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    @property
    def needs_register(self) -> bool:
        return self.status == 401 and self.code in REREGISTER_CODES

    @property
    def retryable(self) -> bool:
        # 5xx and proxy HTML pages (no JSON code) may pass; 4xx from our server will not.
        return self.status >= 500 or self.status in (408, 429) or self.code == "http_error"


class RelayClient:
    def __init__(self, config: AgentConfig, *, facts: dict[str, Any]) -> None:
        self.config = config
        self.facts = facts
        self.http = requests.Session()
        self.http.headers["User-Agent"] = f"code-remote-agent/{VERSION}"
        self.access_token: str | None = None
        self.poll_timeout_seconds = 25.0

    def _request(self, method: str, path: str, *, token: str | None, read_timeout: float, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.http.request(
            method,
            self.config.relay_url + path,
            headers=headers,
            timeout=(self.config.connect_timeout_seconds, read_timeout),
            **kwargs,
        )
        if response.status_code >= 400:
            raise _error(response)
        return response

    def register(self) -> None:
        body = {"machine": self.config.machine_name, **self.facts}
        response = self._request("POST", "/api/agent/register", token=self.config.auth_token, read_timeout=30, json=body)
        data = response.json()
        self.access_token = data["token"]
        self.poll_timeout_seconds = float(data.get("poll_timeout_seconds", 25))

    def _agent_call(self, method: str, path: str, *, read_timeout: float, **kwargs) -> requests.Response:
        if self.access_token is None:
            self.register()
        try:
            return self._request(method, path, token=self.access_token, read_timeout=read_timeout, **kwargs)
        except RelayError as error:
            if not error.needs_register:
                raise
            log.info("agent token refused (%s): registering again", error.code)
            self.register()
            return self._request(method, path, token=self.access_token, read_timeout=read_timeout, **kwargs)

    def poll(self) -> list[dict[str, Any]]:
        """Wait for commands; an empty list when the hold ran out with none."""
        hold = self.poll_timeout_seconds
        response = self._agent_call(
            "GET", "/api/agent/poll", params={"wait": f"{hold:g}"}, read_timeout=hold + self.config.poll_slack_seconds
        )
        if response.status_code == 204:
            return []
        return list(response.json().get("commands", []))

    def start(self, command: dict[str, Any]) -> None:
        """Confirm a leased command; raises RelayError 409/404 when it must not be run."""
        self._agent_call("POST", f"/api/agent/commands/{command['id']}/start", read_timeout=30, json={"lease": command["lease"]})

    def post_result(self, command_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Post a result; safe to repeat with the same body (the server applies it once)."""
        return self._agent_call("POST", f"/api/agent/commands/{command_id}/result", read_timeout=30, json=body).json()


def _error(response: requests.Response) -> RelayError:
    try:
        error = response.json()["error"]
        return RelayError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        # Not our server's JSON: a proxy's or load balancer's page. Say so, without dumping it.
        kind = response.headers.get("Content-Type", "unknown type").split(";")[0]
        return RelayError(response.status_code, "http_error", f"non-JSON {kind} response ({len(response.content)} bytes)")
