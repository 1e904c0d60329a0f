"""What `scripts/dev` prints to connect clients (`python -m web.console.connect`): the configurations,
and for Claude.ai the tunnel command of whichever tunnel tool is installed."""

from __future__ import annotations

import os

import pytest

from web.console import connect


def installed(tmp_path, monkeypatch, *tools: str) -> None:
    """A PATH holding only these (empty, executable) tools."""
    for tool in tools:
        path = tmp_path / tool
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.mark.parametrize(("tools", "line"), [
    (["cloudflared", "ngrok"], "cloudflared tunnel --url http://127.0.0.1:8123"),
    (["ngrok"], "ngrok http 8123"),
    (["tailscale"], "tailscale funnel 8123"),
])
def test_the_installed_tunnel_tool_gets_its_command_line(tmp_path, monkeypatch, capsys, tools, line):
    installed(tmp_path, monkeypatch, *tools)
    monkeypatch.setenv("AUTH_TOKEN", "the-secret")
    assert connect.main(["--url", "http://127.0.0.1:8123", "--port", "8123"]) == 0
    out = capsys.readouterr().out
    assert f"  {line}\n" in out and "PUBLIC_URL=https://" in out
    assert 'claude mcp add --transport http code-remote http://127.0.0.1:8123/mcp --header "Authorization: Bearer the-secret"' in out


def test_without_a_tunnel_tool_it_says_which_to_install(tmp_path, monkeypatch, capsys):
    installed(tmp_path, monkeypatch)
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    connect.main(["--url", "http://127.0.0.1:8000"])
    out = capsys.readouterr().out
    assert "install cloudflared, ngrok or tailscale" in out and "<AUTH_TOKEN>" in out
    section = "'From Claude.ai to a server on your computer'"
    assert section in out.replace("\n", " ")
    with open(os.path.join(os.path.dirname(connect.__file__), "..", "..", "docs", "DEPLOYMENT.md"), encoding="utf-8") as guide:
        assert f"## {section[1:-1]}\n" in guide.read(), "the section the hint names exists"


def test_with_a_public_url_it_names_the_connector_url_for_claude_ai(tmp_path, monkeypatch, capsys):
    installed(tmp_path, monkeypatch, "cloudflared")
    connect.main(["--url", "http://127.0.0.1:8000", "--public-url", "https://abc.trycloudflare.com/"])
    assert "add the custom connector https://abc.trycloudflare.com/mcp" in capsys.readouterr().out
