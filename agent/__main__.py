"""Run the agent: `python -m agent` (configured by the environment or agent/.env).

`python -m agent doctor` checks the way to the server step by step instead (DNS, TCP, proxy, TLS,
clock, token, one poll) and prints a verdict and a `curl -v` equivalent for each step."""

from __future__ import annotations

import argparse
import logging
import sys

from agent import VERSION
from agent.config import AgentConfig, ConfigError
from agent.loop import Agent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"code-remote-agent {VERSION}")
    parser.add_argument("command", nargs="?", choices=["run", "doctor"], default="run", help="run (default) or doctor")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from agent import doctor

        return doctor.main()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = AgentConfig.from_env()
    except ConfigError as error:
        print(f"agent: {error}", file=sys.stderr)
        return 2
    agent = Agent(config)
    agent.install_signal_handlers()
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
