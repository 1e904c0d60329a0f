"""How to connect MCP clients, written once: the dashboard's Connect page and `scripts/dev` both print
these (`python -m web.console.connect --url URL` reads AUTH_TOKEN from the environment).

Claude.ai reaches a server only at a public HTTPS URL. A server on a laptop gets one from a tunnel:
a cloudflared quick tunnel, ngrok, or `tailscale funnel`; the server must then be started with
PUBLIC_URL set to the tunnel's origin, so that its OAuth metadata (where Claude.ai signs in) names it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from flask import render_template, request

from web.console.views import bp

PLACEHOLDER = "<AUTH_TOKEN>"
MCP_REMOTE = "mcp-remote@0.15.1"
INSPECTOR = "@modelcontextprotocol/inspector@0.21.1"


def client_configs(url: str, token: str = PLACEHOLDER) -> list[dict[str, str]]:
    """Ready configurations for the common MCP clients, as (name, where it goes, text)."""
    header = f"Authorization: Bearer {token}"
    desktop = {"mcpServers": {"code-remote": {"command": "npx", "args": ["-y", MCP_REMOTE, f"{url}/sse", "--header", header]}}}
    cursor = {"mcpServers": {"code-remote": {"url": f"{url}/mcp", "headers": {"Authorization": f"Bearer {token}"}}}}
    return [
        {"id": "claude-code", "name": "Claude Code", "where": "in a terminal (Streamable HTTP; use --transport sse with /sse for older versions)",
         "text": f'claude mcp add --transport http code-remote {url}/mcp --header "{header}"'},
        {"id": "claude-desktop", "name": "Claude Desktop", "where": "claude_desktop_config.json, through mcp-remote",
         "text": json.dumps(desktop, indent=2)},
        {"id": "cursor", "name": "Cursor", "where": "~/.cursor/mcp.json (or .cursor/mcp.json in a project)",
         "text": json.dumps(cursor, indent=2)},
        {"id": "inspector", "name": "MCP Inspector", "where": "in a terminal",
         "text": f'npx -y {INSPECTOR} --cli {url}/mcp --transport http --header "{header}" --method tools/list'},
    ]


def tunnels(port: int | str) -> list[dict[str, str]]:
    """The three ways to give a local server a public HTTPS URL for Claude.ai."""
    return [
        {"tool": "cloudflared", "command": f"cloudflared tunnel --url http://127.0.0.1:{port}",
         "note": "a quick tunnel, no account needed; it prints https://<random>.trycloudflare.com (a new one each run)"},
        {"tool": "ngrok", "command": f"ngrok http {port}",
         "note": "needs a free account (ngrok config add-authtoken …); it prints https://<random>.ngrok-free.app"},
        {"tool": "tailscale", "command": f"tailscale funnel {port}",
         "note": "on a tailnet with Funnel enabled; https://<machine>.<tailnet>.ts.net, the same every time"},
    ]


def installed_tunnel(port: int | str) -> dict[str, str] | None:
    """The first tunnel tool installed on this machine, if any."""
    for tunnel in tunnels(port):
        if shutil.which(tunnel["tool"]):
            return tunnel
    return None


@bp.route("/connect", methods=["GET", "POST"])
def connect():
    from web.http import public_origin, services

    origin = public_origin()
    # The token is put in the page only when asked for with a click (a POST with the CSRF token).
    reveal = request.method == "POST" and request.form.get("reveal") == "1"
    token = services().config.auth_token if reveal else PLACEHOLDER
    port = request.host.rpartition(":")[2] if ":" in request.host else "8000"
    return render_template(
        "console/connect.html", origin=origin, configs=client_configs(origin, token), revealed=reveal, tunnels=tunnels(port),
        public_url=services().config.public_url, page="connect",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the MCP client configurations for a Code Remote server.")
    parser.add_argument("--url", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--port", default="8000", help="the local port, for the tunnel line")
    parser.add_argument("--public-url", default="", help="the server's PUBLIC_URL (a tunnel's origin), if it has one")
    args = parser.parse_args(argv)
    token = os.environ.get("AUTH_TOKEN", PLACEHOLDER)
    for config in client_configs(args.url.rstrip("/"), token):
        print(f"{config['name']}, {config['where']}:")
        print("  " + config["text"].replace("\n", "\n  "))
        print()
    tunnel = installed_tunnel(args.port)
    if args.public_url:
        print(f"Claude.ai: add the custom connector {args.public_url.rstrip('/')}/mcp (Settings → Connectors → Add custom")
        print("  connector) and approve it with the owner secret; the tunnel must forward to this server.")
    elif tunnel:
        print(f"Claude.ai needs a public HTTPS URL; {tunnel['tool']} is installed, so in another terminal:")
        print(f"  {tunnel['command']}")
        print(f"  ({tunnel['note']})")
        print("  then restart with PUBLIC_URL=https://<the tunnel's host> scripts/dev, and add <that URL>/mcp in Claude.ai")
        print("  (Settings → Connectors → Add custom connector); approve it there with the owner secret.")
    else:
        print("Claude.ai needs a public HTTPS URL: install cloudflared, ngrok or tailscale")
        print("  (docs/DEPLOYMENT.md, 'From Claude.ai to a server on your computer').")
    return 0


if __name__ == "__main__":
    sys.exit(main())
