"""The dashboard's pages: sign-in, machines, history, a command, access. Server-rendered (Jinja),
each a thin view over web/console/queries.py; the live view and its event stream are in live.py,
the connect page in connect.py.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, abort, current_app, g, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from web import controls, errors
from web.api import KEY_SHA256
from web.console import queries
from web.console.signin import HEADERS, SignIn, guard, safe_next
from web.http import services
from web.mcp.tool_specs import TOOLS_BY_NAME
from web.models import TERMINAL_STATES
from web.relay import output

log = logging.getLogger(__name__)
bp = Blueprint("console", __name__, url_prefix="/dashboard", template_folder="templates", static_folder="static")
OUTPUT_PAGE_BYTES = 64 * 1024


def signin() -> SignIn:
    return current_app.extensions["code_remote_console"]


def install(app) -> None:
    """Register the dashboard on `app`."""
    from web.console import connect, feed, live  # noqa: F401  (their routes join bp before it is registered)

    config = app.extensions["code_remote"].config
    app.extensions["code_remote_console"] = SignIn(config.auth_token, config.dashboard_session_seconds, config.public_url)
    app.extensions["code_remote_live_feed"] = feed.Feed()
    app.register_blueprint(bp)


@bp.before_request
def require_sign_in():
    return guard(signin())


@bp.after_app_request
def sign_in_after_consent(response: Response) -> Response:
    """The owner proved the owner secret on the OAuth consent page and asked to be signed in here too."""
    via = g.pop("owner_proved", None)
    if via and response.status_code < 400:
        signin().sign_in(response, via=via)
        log.info("dashboard: owner signed in through the consent page from %s", request.remote_addr)
    return response


@bp.after_request
def security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint == "console.static":
        response.headers["Cache-Control"] = "no-cache"
    return response


@bp.errorhandler(HTTPException)
def error_page(error: HTTPException):
    return render_template("console/error.html", error=error), error.code or 500


@bp.errorhandler(errors.CodeRemoteError)
def code_remote_error_page(error: errors.CodeRemoteError):
    response = make_response(render_template("console/error.html", error=error), error.http_status)
    if isinstance(error, errors.TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response


@bp.app_template_filter("when")
def when(t: float | None) -> str:
    if t is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


@bp.app_template_filter("ago")
def ago(t: float | None) -> str:
    if t is None:
        return "never"
    seconds = max(0, int(time.time() - t))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@bp.app_template_global("csrf_token")
def csrf_token() -> str:
    return str(getattr(g, "console", {}).get("csrf", ""))


def summary(command) -> str:
    """One line saying what a command does: its shell command, or its tool and path (controls and
    newlines written visibly)."""
    arguments = command.arguments or {}
    text = arguments.get("command") or arguments.get("path") or ""
    return controls.escape(controls.name(str(text)[:300]))


# Output, file names and messages come from the machine: shown with their control characters and bidi
# controls written visibly (web/controls.py), so `exe.txt` cannot display as `txt.exe` here either.
# The live view escapes what it appends the same way (static/console.js).
bp.add_app_template_filter(controls.escape, "visible")


bp.add_app_template_global(summary, "summary")


@bp.app_template_global("policy_text")
def policy_text(machine) -> str:
    """The agent's own policy on that machine, as it reported it at registration."""
    policy = getattr(machine, "policy", None)
    if not policy:
        return "not reported by this agent"
    parts = ["read-only" if policy.get("read_only") else "read and write"]
    if policy.get("disabled_tools"):
        parts.append("tools off: " + ", ".join(policy["disabled_tools"]))
    if policy.get("allowed_commands"):
        parts.append("commands allowed: " + ", ".join(policy["allowed_commands"]))
    if policy.get("deny_paths"):
        parts.append(f"{len(policy['deny_paths'])} extra denied paths")
    return "; ".join(parts)


# --- sign-in ------------------------------------------------------------------------------------


@bp.get("/signin")
def signin_form():
    response = make_response()
    token = signin().login_token(response)
    response.set_data(render_template("console/signin.html", token=token, next=safe_next(request.args.get("next")), error=""))
    return response


@bp.post("/signin")
def signin_post():
    sign = signin()
    sign.check_login_token()
    target = safe_next(request.form.get("next"))
    secret = request.form.get("owner_secret", "")
    try:
        ok = services().credentials.owner_secret(secret, address=request.remote_addr)
    except errors.TooManyRequests as error:
        response = make_response(render_template("console/signin.html", token=request.form.get("csrf_token", ""), next=target, error=error.message), 429)
        response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response
    if not ok:
        log.info("dashboard: failed sign-in from %s", request.remote_addr)
        html = render_template("console/signin.html", token=request.form.get("csrf_token", ""), next=target, error="That is not the owner secret (AUTH_TOKEN) of this server.")
        return html, 401
    response = redirect(target, 303)
    sign.sign_in(response, via="owner secret")
    log.info("dashboard: owner signed in from %s", request.remote_addr)
    return response


@bp.post("/signout")
def signout():
    response = redirect(url_for("console.signin_form"), 303)
    signin().sign_out(response)
    return response


# --- machines -----------------------------------------------------------------------------------


@bp.get("/")
@bp.get("/machines")
def machines():
    relay = services().relay
    load = queries.workload()
    refused = queries.refused_keys()
    rows = [
        {
            "machine": m,
            "online": relay.is_online(m),
            "last_seen_at": relay.last_seen_at(m),
            "queued": load.get(m.name, {}).get("queued", 0),
            "running": load.get(m.name, {}).get("running", 0),
            "refused": [r for r in refused.get(m.name, []) if r["key"] != m.key_hash],
        }
        for m in queries.all_machines()
    ]
    return render_template("console/machines.html", rows=rows, page="machines")


@bp.route("/machines/<name>/revoke", methods=["GET", "POST"])
def revoke_machine(name: str):
    machine = queries.machine(name)
    if machine is None:
        abort(404, f"no machine named {name!r}")
    if request.method == "GET":
        return render_template("console/revoke_machine.html", machine=machine, page="machines")
    services().relay.revoke(name)
    log.info("dashboard: owner revoked machine %s", name)
    return redirect(url_for("console.machines", revoked=name), 303)


@bp.route("/machines/<name>/approve", methods=["GET", "POST"])
def approve_machine(name: str):
    """Hand a machine's name to another agent's key (a reinstalled machine): the form, then the change."""
    machine = queries.machine(name)
    if machine is None:
        abort(404, f"no machine named {name!r}")
    key = request.values.get("key_sha256", "").strip().lower()[:64]
    if request.method == "GET" or not KEY_SHA256.fullmatch(key):
        error = "" if request.method == "GET" else "The key's SHA-256 is 64 hexadecimal digits, as the refused agent logged it."
        refused = [r for r in queries.refused_keys().get(name, []) if r["key"] != machine.key_hash]
        html = render_template("console/approve_machine.html", machine=machine, key=key, refused=refused, error=error, page="machines")
        return html, 400 if error else 200
    services().relay.approve(name, key)
    log.info("dashboard: owner handed machine %s to another key", name)
    return redirect(url_for("console.machines", approved=name), 303)


# --- history and commands -----------------------------------------------------------------------


@bp.get("/history")
def history():
    filters = queries.Filters.from_args(request.args)
    rows, cursor = queries.history(filters)
    return render_template(
        "console/history.html", rows=rows, filters=filters, cursor=cursor, choices=queries.history_choices(), page="history",
        next_url=url_for("console.history", before=cursor, **filters.query_args()) if cursor else None,
    )


@bp.get("/commands/<command_id>")
def command(command_id: str):
    since = queries.high_water()  # before reading the command: the live stream picks up from here
    found = queries.command(command_id)
    if found is None:
        abort(404, f"no command {command_id[:32]}")
    svc = services()
    stream = request.args.get("stream", "stdout") if request.args.get("stream") in output.STREAMS else "stdout"
    offset_raw = request.args.get("offset", "")
    paged = None
    if offset_raw.isdigit():
        text, next_offset = output.page(svc.relay.output, found, stream, int(offset_raw), OUTPUT_PAGE_BYTES)
        paged = {"stream": stream, "offset": int(offset_raw), "text": text, "next": next_offset, "size": output.stored(found, stream)}
    callers = queries.callers(found.id)
    return render_template(
        "console/command.html",
        command=found,
        since=since,
        rendered=output.render(svc.relay.output, found, svc.config.tool_output_budget_bytes),
        sizes={s: (output.stored(found, s), output.received(found, s)) for s in output.STREAMS},
        paged=paged,
        events=queries.events(found.id),
        callers=[queries.describe_caller(svc, row) for row in callers],
        terminal=found.state in TERMINAL_STATES,
        relayed=found.tool in TOOLS_BY_NAME,
        page="live" if found.state not in TERMINAL_STATES else "history",
    )


@bp.post("/commands/<command_id>/cancel")
def cancel_command(command_id: str):
    found = queries.command(command_id)
    if found is None:
        abort(404, f"no command {command_id[:32]}")
    services().relay.cancel(found.id, actor="owner", reason="cancelled from the dashboard")
    log.info("dashboard: owner cancelled command %s", found.id[:8])
    if request.form.get("back") == "live":
        return redirect(url_for("console.live"), 303)
    return redirect(url_for("console.command", command_id=found.id), 303)


# --- access -------------------------------------------------------------------------------------


@bp.get("/access")
def access():
    return render_template(
        "console/access.html", clients=queries.oauth_clients(), sessions=queries.mcp_sessions(services()), page="access",
        shared_sessions=queries.shared_session_table() is not None
    )


@bp.route("/access/clients/<client_id>/revoke", methods=["GET", "POST"])
def revoke_client(client_id: str):
    if request.method == "GET":
        client = queries.oauth_client(client_id[:64])
        if client is None:
            abort(404, f"no OAuth client {client_id[:64]}")
        return render_template("console/revoke_client.html", client=client, page="access")
    if not services().oauth.revoke_client(client_id[:64]):
        abort(404, f"no OAuth client {client_id[:64]}")
    log.info("dashboard: owner revoked OAuth client %s", client_id[:8])
    return redirect(url_for("console.access", revoked=client_id[:64]), 303)
