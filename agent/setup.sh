#!/usr/bin/env bash
# Set up the Code Remote agent on this machine: ask for the server URL and token (and proxy, CA bundle,
# machine name, allowed folders), check them with `python -m agent doctor`, then write agent/.env
# readable only by you. With --service, also install it as a service that starts at login
# (systemd user unit on Linux, launchd agent on macOS).
#
#   agent/setup.sh              ask, check, write agent/.env
#   agent/setup.sh --service    ... and install + start the service
#   agent/setup.sh --yes        ask nothing: take RELAY_URL, AUTH_TOKEN, etc. from the environment
#
# Answers default to what the environment or an existing agent/.env holds: Enter keeps one, "-" clears it.
# PYTHON names the interpreter to use; otherwise agent/.venv is created with `requests` in it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
env_file=$here/.env
want_service=""
assume_yes=""
for arg in "$@"; do
  case "$arg" in
    --service) want_service=1 ;;
    --yes|-y) assume_yes=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '%s\n' "$*" >&2; }

# --- Python with requests ---------------------------------------------------------------------------
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ ! -x "$here/.venv/bin/python" ]; then
    command -v python3 >/dev/null || { say "setup: python3 not found; install Python 3.9 or newer"; exit 1; }
    say "Creating $here/.venv ..."
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  fi
  python=$here/.venv/bin/python
fi
"$python" -c 'import sys, requests; sys.exit(sys.version_info < (3, 9))' 2>/dev/null || {
  say "setup: $python is not Python 3.9+ with requests; install agent/requirements.txt into it"; exit 1; }

# --- current values: environment, then an existing agent/.env ---------------------------------------
existing() {  # existing NAME: the value of NAME in agent/.env, if any
  [ -f "$env_file" ] || return 0
  sed -n "s/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}$1=//p" "$env_file" | tail -n 1 | sed "s/^[\"']\(.*\)[\"']\$/\1/"
}
current() {  # current NAME [ALT_NAME]: environment first (lowercase spelling wins), then agent/.env
  local name value=""
  for name in "$@"; do
    value=${!name:-}
    [ -n "$value" ] && { printf '%s' "$value"; return 0; }
  done
  for name in "$@"; do
    value=$(existing "$name")
    [ -n "$value" ] && { printf '%s' "$value"; return 0; }
  done
  return 0
}
ask() {  # ask VAR "question" default [secret]: sets VAR; Enter keeps the default, "-" clears it
  local var=$1 question=$2 default=$3 secret=${4:-} shown answer=""
  if [ -z "$assume_yes" ]; then
    shown=$default
    [ -n "$secret" ] && [ -n "$default" ] && shown="keep the current one"
    printf '%s%s: ' "$question" "${shown:+ [$shown]}" >&2
    if [ -n "$secret" ] && [ -t 0 ]; then
      read -r -s answer || true
      echo >&2
    else
      read -r answer || true
      [ -t 0 ] || echo >&2
    fi
  fi
  [ "$answer" = "-" ] && { printf -v "$var" '%s' ""; return 0; }
  printf -v "$var" '%s' "${answer:-$default}"
}

ask RELAY_URL "Server URL (https://...)" "$(current RELAY_URL)"
ask AUTH_TOKEN "Token (the server's AUTH_TOKEN)" "$(current AUTH_TOKEN)" secret
ask MACHINE_NAME "Name of this machine" "$(current MACHINE_NAME)"
ask ALLOWED_ROOTS "Folders the file tools may use (':'-separated; empty: home, /tmp, /var/tmp)" "$(current ALLOWED_ROOTS)"
ask HTTPS_PROXY "HTTPS proxy (http://user:password@host:port; empty: none)" "$(current https_proxy HTTPS_PROXY)"
ask NO_PROXY "Hosts that bypass the proxy (comma-separated)" "$(current no_proxy NO_PROXY)"
ask CA_BUNDLE "CA bundle for a TLS-inspecting proxy or private CA (PEM file; empty: system store)" "$(current CA_BUNDLE REQUESTS_CA_BUNDLE)"

[ -n "$RELAY_URL" ] || { say "setup: the server URL is required"; exit 1; }
[ -n "$AUTH_TOKEN" ] || { say "setup: the token is required"; exit 1; }
case "$RELAY_URL" in http://*|https://*) ;; *) say "setup: the server URL must start with https:// (or http://)"; exit 1 ;; esac
if [ -n "$CA_BUNDLE" ]; then
  CA_BUNDLE=$(cd "$(dirname "$CA_BUNDLE")" 2>/dev/null && printf '%s/%s' "$(pwd)" "$(basename "$CA_BUNDLE")") || true
  [ -e "$CA_BUNDLE" ] || { say "setup: CA bundle not found: $CA_BUNDLE"; exit 1; }
fi

# --- check them before saving anything ---------------------------------------------------------------
say ""
say "Checking the way to $RELAY_URL ..."
if ! (cd "$root" && env CODE_REMOTE_ENV_FILE=/dev/null RELAY_URL="$RELAY_URL" AUTH_TOKEN="$AUTH_TOKEN" \
      MACHINE_NAME="${MACHINE_NAME:-}" ALLOWED_ROOTS="$ALLOWED_ROOTS" \
      https_proxy="$HTTPS_PROXY" HTTPS_PROXY="$HTTPS_PROXY" http_proxy="$HTTPS_PROXY" HTTP_PROXY="$HTTPS_PROXY" \
      no_proxy="$NO_PROXY" NO_PROXY="$NO_PROXY" CA_BUNDLE="$CA_BUNDLE" REQUESTS_CA_BUNDLE="$CA_BUNDLE" \
      "$python" -m agent doctor >&2); then
  say ""
  say "setup: the check failed (see the first FAIL above); nothing was saved. Fix it and run setup again."
  exit 1
fi

# --- write agent/.env, readable only by this user ----------------------------------------------------
tmp=$(umask 077; mktemp "$here/.env.XXXXXX")
{
  echo "# Code Remote agent settings, written by agent/setup.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
  echo "RELAY_URL=$RELAY_URL"
  echo "AUTH_TOKEN=$AUTH_TOKEN"
  [ -n "$MACHINE_NAME" ] && echo "MACHINE_NAME=$MACHINE_NAME"
  [ -n "$ALLOWED_ROOTS" ] && echo "ALLOWED_ROOTS=$ALLOWED_ROOTS"
  [ -n "$HTTPS_PROXY" ] && echo "HTTPS_PROXY=$HTTPS_PROXY"
  [ -n "$NO_PROXY" ] && echo "NO_PROXY=$NO_PROXY"
  [ -n "$CA_BUNDLE" ] && echo "CA_BUNDLE=$CA_BUNDLE"
  # Keep every other setting of an existing file (policy, limits) as it was.
  if [ -f "$env_file" ]; then
    grep -v -E '^[[:space:]]*(export[[:space:]]+)?(RELAY_URL|AUTH_TOKEN|MACHINE_NAME|ALLOWED_ROOTS|HTTPS_PROXY|https_proxy|NO_PROXY|no_proxy|CA_BUNDLE|REQUESTS_CA_BUNDLE)=' "$env_file" \
      | grep -v '^# Code Remote agent settings, written by agent/setup.sh' || true
  fi
} > "$tmp"
chmod 600 "$tmp"
mv -f "$tmp" "$env_file"
say "Saved $env_file (mode 600)."

# --- the service ---------------------------------------------------------------------------------------
if [ -z "$want_service" ]; then
  say "Run the agent with: $here/run.sh    (or install it as a service: $0 --service)"
  exit 0
fi
render() {  # render systemd|launchd: the filled-in service definition on stdout
  AGENT_DIR=$here LOG_DIR=$log_dir HTTPS_PROXY=$HTTPS_PROXY NO_PROXY=$NO_PROXY CA_BUNDLE=$CA_BUNDLE \
    "$python" "$here/service/render.py" "$1"
}
if [ "$(uname -s)" = Darwin ]; then
  log_dir=$HOME/Library/Logs/code-remote
  plist=$HOME/Library/LaunchAgents/com.coderemote.agent.plist
  mkdir -p "$(dirname "$plist")" "$log_dir"
  render launchd > "$plist"
  say "Installed $plist"
  launchctl bootout "gui/$(id -u)" "$plist" 2>/dev/null || true
  launchctl bootstrap "gui/$(id -u)" "$plist"
  say "Started. Logs: $log_dir/agent.log. Stop with: launchctl bootout gui/$(id -u) $plist"
else
  log_dir=${XDG_STATE_HOME:-$HOME/.local/state}/code-remote/logs
  unit=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/code-remote-agent.service
  mkdir -p "$(dirname "$unit")"
  render systemd > "$unit"
  say "Installed $unit"
  if systemctl --user daemon-reload 2>/dev/null; then
    systemctl --user enable --now code-remote-agent
    say "Started. Logs: $log_dir/agent.log. Keep it running while logged out: loginctl enable-linger $USER"
  else
    say "No systemd user session here: start it later with"
    say "  systemctl --user daemon-reload && systemctl --user enable --now code-remote-agent"
  fi
fi
