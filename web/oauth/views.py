"""OAuth 2.1 authorization server for MCP clients that cannot send a header (Claude.ai, ChatGPT).

    GET  /.well-known/oauth-protected-resource     RFC 9728: one resource, the whole origin
    GET  /.well-known/oauth-authorization-server   RFC 8414
    POST /register                                  RFC 7591 dynamic client registration
                                                    (or a client_id that is the https URL of its
                                                    Client ID Metadata Document: client_metadata.py)
    GET  /authorize                                 consent page: the owner signs in and approves
    POST /authorize                                 approve or deny -> redirect with code or error
    POST /token                                     authorization_code (PKCE S256), refresh_token
    POST /revoke                                    RFC 7009

Every 401 from the MCP endpoints carries `resource_metadata` (web/http.py), where a client starts.
Until the redirect URI is known to belong to the client, errors are shown on a page, never redirected
(RFC 6749 §4.1.2.1): a forged link must not turn this server into an open redirector.
"""

from __future__ import annotations

import base64
import logging
import re
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from flask import Blueprint, Response, g, redirect, render_template, request

from web.http import json_response, public_origin, read_json, services
from web.oauth.store import SCOPE, OAuthError, redirect_problem, redirect_registered

log = logging.getLogger(__name__)
bp = Blueprint("oauth", __name__)

CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_STATE_CHARS = 1024
MAX_FORM_BYTES = 16 * 1024
AUTH_PARAMS = ("response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "resource", "scope")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


# Browser-based clients (the MCP Inspector's UI) fetch metadata, register and redeem codes from a page
# on another origin. No cookie is involved anywhere, so any origin may read these answers.
CORS_PATHS = ("/.well-known/", "/register", "/token", "/revoke")


@bp.after_request
def allow_cross_origin(response: Response) -> Response:
    if request.path.startswith(CORS_PATHS):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, MCP-Protocol-Version"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _oauth_json(body: dict[str, Any], status: int = 200) -> Response:
    response = json_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _oauth_error(error: OAuthError) -> Response:
    return _oauth_json(error.body(), error.status)


def resource() -> str:
    return public_origin() + "/"


@bp.get("/.well-known/oauth-protected-resource")
@bp.get("/.well-known/oauth-protected-resource/<path:_rest>")
def protected_resource_metadata(_rest: str = ""):
    origin = public_origin()
    return json_response(
        {
            "resource": origin + "/",
            "authorization_servers": [origin],
            "scopes_supported": [SCOPE],
            "bearer_methods_supported": ["header"],
            "resource_name": "Code Remote",
        }
    )


@bp.get("/.well-known/oauth-authorization-server")
@bp.get("/.well-known/oauth-authorization-server/<path:_rest>")
def authorization_server_metadata(_rest: str = ""):
    origin = public_origin()
    return json_response(
        {
            "issuer": origin,
            "authorization_endpoint": origin + "/authorize",
            "token_endpoint": origin + "/token",
            "registration_endpoint": origin + "/register",
            "revocation_endpoint": origin + "/revoke",
            "scopes_supported": [SCOPE],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
            "authorization_response_iss_parameter_supported": True,
            "client_id_metadata_document_supported": True,
        }
    )


@bp.post("/register")
def register_client():
    # Registration needs no credential, so each address may add only so many clients to the database.
    services().registrations.hit(request.remote_addr)
    try:
        metadata = read_json(64 * 1024)
        return _oauth_json(services().oauth.register(metadata), 201)
    except OAuthError as error:
        return _oauth_error(error)


# --- authorization ------------------------------------------------------------------------------


class PageError(Exception):
    """An authorization request too broken to redirect back: shown to the person instead."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


def _check_request(params: dict[str, str]) -> tuple[Any, str]:
    """Validate an authorization request; return (client, canonical resource) or raise.

    PageError while the redirect URI is not trusted yet, OAuthError (to redirect) afterwards.
    """
    svc = services()
    try:
        # A client_id that is an https URL is fetched (web/oauth/client_metadata.py): each address may
        # make the server fetch only as often as it may register clients.
        client = svc.oauth.client(params.get("client_id"), fresh=True, before_fetch=lambda: svc.registrations.hit(request.remote_addr))
    except OAuthError as error:
        raise PageError(error.description, error.error) from None
    redirect_uri = params.get("redirect_uri", "")
    problem = redirect_problem(redirect_uri)
    if problem:
        raise PageError(f"redirect_uri {redirect_uri[:200]!r} was refused: {problem}", "invalid_redirect_uri")
    if not redirect_registered(redirect_uri, client.redirect_uris):
        raise PageError(
            "redirect_uri is not one this client registered (only a loopback http redirect's port may differ); "
            "the request was not sent back to it",
            "invalid_redirect_uri",
        )
    if len(params.get("state", "")) > MAX_STATE_CHARS:
        raise OAuthError("invalid_request", f"state is longer than {MAX_STATE_CHARS} characters")
    if params.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "only response_type=code is supported")
    if params.get("code_challenge_method") != "S256" or not CHALLENGE.fullmatch(params.get("code_challenge", "")):
        raise OAuthError("invalid_request", "PKCE is required: send code_challenge (43 characters) with code_challenge_method=S256")
    return client, canonical_resource(params.get("resource"))


def canonical_resource(requested: str | None) -> str:
    """This server's resource for any requested resource on its origin (/, /mcp, /sse)."""
    ours = resource()
    if not requested:
        return ours
    want, have = urlsplit(requested), urlsplit(ours)
    if (want.scheme.lower(), want.netloc.lower()) != (have.scheme.lower(), have.netloc.lower()) or want.fragment:
        raise OAuthError("invalid_target", f"resource {requested!r} is not served here; use {ours}")
    return ours


def _redirect_back(redirect_uri: str, params: dict[str, str]) -> Response:
    """Send the authorization response to the client's redirect URI, naming this issuer (RFC 9207),
    so a client talking to several servers can tell which one answered (mix-up attacks)."""
    params = params | {"iss": public_origin()}
    if "error" in params:
        g.refusal = (params["error"], params.get("error_description", ""))
    separator = "&" if urlsplit(redirect_uri).query else "?"
    response = redirect(redirect_uri + separator + urlencode(params), code=302)
    response.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    return response


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return Response(render_template(template, **context), status=status, headers=PAGE_HEADERS, mimetype="text/html")


@bp.route("/authorize", methods=["GET", "POST"])
def authorize():
    source = request.args if request.method == "GET" else request.form
    if request.method == "POST" and (request.content_length or 0) > MAX_FORM_BYTES:
        g.refusal = ("invalid_request", f"the consent form is over {MAX_FORM_BYTES} bytes")
        return _page("oauth_error.html", 413, message="the form is too large")
    params = {name: source.get(name, "") for name in AUTH_PARAMS}
    try:
        client, canonical = _check_request(params)
    except PageError as error:
        g.refusal = (error.code, str(error))
        return _page("oauth_error.html", 400, message=str(error))
    except OAuthError as error:
        return _redirect_back(params["redirect_uri"], {"error": error.error, "error_description": error.description, "state": params["state"]})
    if request.method == "GET":
        return _consent(client, params, canonical)
    if request.form.get("decision") != "approve":
        return _redirect_back(params["redirect_uri"], {"error": "access_denied", "error_description": "the owner declined", "state": params["state"]})
    svc = services()
    if not svc.credentials.owner_secret(request.form.get("owner_secret", ""), address=request.remote_addr):
        g.refusal = ("invalid_owner_secret", "the consent page was sent a wrong owner secret")
        return _consent(client, params, canonical, error="That is not the owner secret (AUTH_TOKEN) of this server.", status=401)
    code = svc.oauth.issue_code(
        client, redirect_uri=params["redirect_uri"], code_challenge=params["code_challenge"], resource=canonical, scope=SCOPE
    )
    log.info("oauth: owner approved client %s", client.client_id[:8])
    if request.form.get("dashboard") == "1":
        g.owner_proved = "OAuth consent"  # the dashboard signs this browser in (web/console/views.py)
    return _redirect_back(params["redirect_uri"], {"code": code, "state": params["state"]})


def _consent(client, params: dict[str, str], canonical: str, *, error: str = "", status: int = 200) -> Response:
    target = urlsplit(params["redirect_uri"])
    return _page(
        "consent.html",
        status,
        client_name=client.client_name or "An unnamed client",
        client_id=client.metadata_url or client.client_id,
        redirect_uri=params["redirect_uri"],
        redirect_host=target.hostname or target.scheme,
        resource=canonical,
        params=params,
        error=error,
    )


# --- tokens -------------------------------------------------------------------------------------


def _client_from_request():
    """The client of a token or revocation request: Basic auth, or client_id (+ secret) in the form."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            client_id, _, secret = decoded.partition(":")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed Basic client authentication", 401) from None
        return services().oauth.authenticate(unquote(client_id), unquote(secret))
    return services().oauth.authenticate(request.form.get("client_id"), request.form.get("client_secret"))


def _form() -> None:
    if (request.content_length or 0) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", f"the request body is over {MAX_FORM_BYTES} bytes", 413)
    if request.mimetype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the parameters as application/x-www-form-urlencoded")


@bp.post("/token")
def token():
    try:
        _form()
        client = _client_from_request()
        grant_type = request.form.get("grant_type")
        requested = canonical_resource(request.form.get("resource"))
        store = services().oauth
        if grant_type == "authorization_code":
            body = store.exchange_code(
                client,
                request.form.get("code"),
                redirect_uri=request.form.get("redirect_uri"),
                verifier=request.form.get("code_verifier"),
                resource=requested,
            )
        elif grant_type == "refresh_token":
            body = store.refresh(client, request.form.get("refresh_token"), resource=requested)
        else:
            raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
    except OAuthError as error:
        if error.error in ("invalid_grant", "invalid_client"):
            services().credentials.throttle.hit(request.remote_addr)
        return _oauth_error(error)
    return _oauth_json(body)


@bp.post("/revoke")
def revoke():
    try:
        _form()
        client = _client_from_request()
        services().oauth.revoke(client, request.form.get("token"))
    except OAuthError as error:
        return _oauth_error(error)
    return _oauth_json({})
