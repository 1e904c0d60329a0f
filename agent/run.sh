#!/usr/bin/env bash
# Run the Code Remote agent in the foreground, logging to a rotated file (10 MB, 5 kept by default).
# Service managers (systemd, launchd) start this script; run it by hand to try the agent out.
#
#   agent/run.sh                 settings from agent/.env (written by agent/setup.sh)
#   LOG_DIR=/some/where agent/run.sh
#
# Environment: PYTHON (default: agent/.venv/bin/python, else python3), LOG_DIR (default:
# ~/Library/Logs/code-remote on macOS, $XDG_STATE_HOME/code-remote/logs elsewhere), LOG_MAX_BYTES,
# LOG_BACKUPS. Everything else the agent reads itself from the environment or agent/.env.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x "$here/.venv/bin/python" ]; then
    python=$here/.venv/bin/python
  else
    python=python3
  fi
fi

if [ -z "${LOG_DIR:-}" ]; then
  if [ "$(uname -s)" = Darwin ]; then
    LOG_DIR=$HOME/Library/Logs/code-remote
  else
    LOG_DIR=${XDG_STATE_HOME:-$HOME/.local/state}/code-remote/logs
  fi
fi
(umask 077; mkdir -p "$LOG_DIR")

export CODE_REMOTE_ENV_FILE=${CODE_REMOTE_ENV_FILE:-$here/.env}
cd "$root"
exec "$python" -m agent run \
  --log-file "$LOG_DIR/agent.log" \
  --log-max-bytes "${LOG_MAX_BYTES:-10485760}" \
  --log-backups "${LOG_BACKUPS:-5}"
