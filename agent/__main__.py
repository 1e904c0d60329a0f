"""Run the agent: `python -m agent` (configured by the environment or agent/.env).

`python -m agent doctor` checks the way to the server step by step instead (DNS, TCP, proxy, TLS,
clock, token, one poll) and prints a verdict and a `curl -v` equivalent for each step."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys

from agent import VERSION
from agent.config import CREDENTIAL_VARIABLES, AgentConfig, ConfigError
from agent.loop import Agent
from agent.masking import scrub_environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"code-remote-agent {VERSION}")
    parser.add_argument("command", nargs="?", choices=["run", "doctor"], default="run", help="run (default) or doctor")
    parser.add_argument("--log-file", help="write the log here, rotated, instead of to stderr (agent/run.sh sets it)")
    parser.add_argument("--log-max-bytes", type=int, default=10 * 1024 * 1024, help="rotate the log file past this size")
    parser.add_argument("--log-backups", type=int, default=5, help="rotated log files to keep")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from agent import doctor

        return doctor.main()
    handlers: list[logging.Handler] | None = None
    if args.log_file:
        handlers = [logging.handlers.RotatingFileHandler(args.log_file, maxBytes=args.log_max_bytes, backupCount=args.log_backups)]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)
    try:
        config = AgentConfig.from_env()
    except ConfigError as error:
        print(f"agent: {error}", file=sys.stderr)
        return 2
    agent = Agent(config)
    # Every command inherits this process's environment: take the credentials out of it now that they are read.
    scrubbed = scrub_environment(os.environ, config.credential_values, CREDENTIAL_VARIABLES)
    if scrubbed:
        logging.getLogger("agent").info("removed from the commands' environment: %s", ", ".join(sorted(scrubbed)))
    agent.install_signal_handlers()
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
