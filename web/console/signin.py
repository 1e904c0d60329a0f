"""Signing the owner in to the dashboard, and the guards every dashboard request passes.

The owner signs in with the owner secret (AUTH_TOKEN), the same check as the OAuth consent page, and
through the same throttle: failed attempts count per client address, and past the limit the page
answers 429 (a correct secret always passes).

The sign-in is a cookie holding an itsdangerous signature (key derived from AUTH_TOKEN, so every
server process and host accepts it, and changing AUTH_TOKEN signs everyone out) over a random CSRF
token and the time it was made. The cookie is `HttpOnly`, `SameSite=Strict`, `Secure` whenever the
request came over TLS (directly or through TRUSTED_PROXY_HOPS proxies) or PUBLIC_URL is https, scoped
to /dashboard, and expires after DASHBOARD_SESSION_SECONDS; signing out deletes it.

Every form carries the CSRF token in a hidden field and every POST must send it back: a POST without
it, or with another one, is refused with 403 before anything is done. The sign-in form has its own
token, in a short-lived cookie of its own, so a page elsewhere cannot sign the browser in either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from flask import Response, abort, g, redirect, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

COOKIE = "code_remote_console"
LOGIN_COOKIE = "code_remote_console_signin"
COOKIE_PATH = "/dashboard"
LOGIN_SECONDS = 3600
SALT = "code-remote.console"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class SignIn:
    """Issue and check the dashboard's cookies."""

    def __init__(self, auth_token: str, session_seconds: float, public_url: str) -> None:
        key = hmac.new(auth_token.encode(), b"code-remote dashboard sign-in", hashlib.sha256).hexdigest()
        self._serializer = URLSafeTimedSerializer(key, salt=SALT)
        self.session_seconds = int(session_seconds)
        self.public_https = public_url.startswith("https://")

    def current(self) -> dict | None:
        """The signed-in session's claims, or None."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            claims = self._serializer.loads(raw, max_age=self.session_seconds)
        except (BadSignature, SignatureExpired):
            return None
        return claims if isinstance(claims, dict) and claims.get("aud") == "console" else None

    def sign_in(self, response: Response, via: str) -> None:
        claims = {"aud": "console", "csrf": secrets.token_urlsafe(24), "via": via, "at": int(time.time())}
        self._set(response, COOKIE, self._serializer.dumps(claims), self.session_seconds)
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)

    def sign_out(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=self._secure(), httponly=True, samesite="Strict")

    def login_token(self, response: Response) -> str:
        """The sign-in form's CSRF token, set in its own cookie (reused while it is valid)."""
        token = self._login_cookie() or secrets.token_urlsafe(24)
        self._set(response, LOGIN_COOKIE, self._serializer.dumps({"aud": "signin", "csrf": token}), LOGIN_SECONDS)
        return token

    def check_login_token(self) -> None:
        expected = self._login_cookie()
        if not expected or not _same(request.form.get("csrf_token", ""), expected):
            abort(403, "the sign-in form was stale or came from elsewhere: reload the sign-in page and try again")

    def check_csrf(self, claims: dict) -> None:
        if not _same(request.form.get("csrf_token", ""), str(claims.get("csrf", ""))):
            abort(403, "missing or wrong CSRF token: reload the page and submit the form again")

    def _login_cookie(self) -> str | None:
        raw = request.cookies.get(LOGIN_COOKIE)
        if not raw:
            return None
        try:
            claims = self._serializer.loads(raw, max_age=LOGIN_SECONDS)
        except (BadSignature, SignatureExpired):
            return None
        return claims.get("csrf") if isinstance(claims, dict) and claims.get("aud") == "signin" else None

    def _set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path=COOKIE_PATH, secure=self._secure(), httponly=True, samesite="Strict"
        )

    def _secure(self) -> bool:
        return request.is_secure or self.public_https


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path on this server, never another site."""
    if not target:
        return url_for("console.machines")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard") or "\\" in target:
        return url_for("console.machines")
    return target


OPEN_ENDPOINTS = ("console.static", "console.signin_form", "console.signin_post")


def guard(signin: SignIn):
    """Run before every dashboard request: pages need a sign-in, POSTs also the CSRF token. Signed
    out, a page redirects to the sign-in form (a POST or the event stream gets 401), with no data."""
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    claims = signin.current()
    if claims is None:
        if request.method == "GET" and request.endpoint != "console.events":
            return redirect(url_for("console.signin_form", next=request.full_path.rstrip("?")))
        abort(401, "sign in to the dashboard first")
    g.console = claims
    if request.method == "POST":
        signin.check_csrf(claims)
    return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
