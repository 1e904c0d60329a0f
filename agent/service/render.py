"""Fill in a service template for this machine: `python agent/service/render.py systemd|launchd`.

Values come from the environment: AGENT_DIR (required), LOG_DIR, HTTPS_PROXY, NO_PROXY and CA_BUNDLE.
Lines whose setting is empty are left out, so an unset proxy stays unset rather than set to "". Each
value is escaped for its format: `%` doubled for systemd (its specifier character), XML entities for
launchd's plist. The result goes to stdout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
TEMPLATES = {"systemd": HERE / "code-remote-agent.service", "launchd": HERE / "com.coderemote.agent.plist"}
KEYS = ("AGENT_DIR", "LOG_DIR", "HTTPS_PROXY", "NO_PROXY", "CA_BUNDLE")


def _systemd_quote(value: str) -> str:
    """Escape a value for a double-quoted systemd setting (% starts a specifier there)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def render(kind: str, values: dict[str, str]) -> str:
    """The template of `kind` with @KEY@ placeholders filled in from `values`."""
    if not values.get("AGENT_DIR"):
        raise ValueError("AGENT_DIR is required: the absolute path of the agent/ folder")
    quote = _systemd_quote if kind == "systemd" else escape
    lines = []
    for line in TEMPLATES[kind].read_text().splitlines():
        keys = [key for key in KEYS if f"@{key}@" in line]
        if any(not values.get(key) for key in keys):
            continue
        for key in keys:
            line = line.replace(f"@{key}@", quote(values[key]))
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in TEMPLATES:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        sys.stdout.write(render(argv[0], {key: os.environ.get(key, "") for key in KEYS}))
    except ValueError as error:
        print(f"render: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
