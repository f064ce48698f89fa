"""The dashboard's defences: who may look, who may act, and what the browser may run.

* **Where it listens**: loopback by default; any other address needs a token
  (``RQJOBS_WEB_TOKEN``), checked before the server starts (:func:`check_bind`).
* **The token**, when set, is asked for on every request: ``Authorization: Bearer <token>``
  (scripts) or a cookie that the login form sets (browsers). The cookie holds an HMAC
  of the token, never the token, and is HttpOnly and SameSite=Strict.
* **CSRF**: every POST carries a token bound to a random cookie by an HMAC with a
  per-process secret (the signed double-submit pattern); a page of another site can
  neither read the cookie nor compute the token. No server-side session is needed, so
  the blueprint works in a host app with or without one.
* **Content-Security-Policy**: scripts, styles and images from the dashboard only; no
  inline script, no framing, forms post to the dashboard only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from rqjobs.exceptions import InvalidInput

TOKEN_ENV = "RQJOBS_WEB_TOKEN"
AUTH_COOKIE = "rqjobs_web_auth"
CSRF_COOKIE = "rqjobs_web_csrf"
CSRF_FIELD = "csrf_token"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback address without a token (nothing is started)."""
    if token is not None and len(token) < 16:
        raise InvalidInput(f"{TOKEN_ENV} is too short: use at least 16 random characters")
    if not is_loopback(host) and not token:
        raise InvalidInput(
            f"refusing to listen on {host} without a token: anyone who can reach it could retry "
            f"and cancel tasks. Set {TOKEN_ENV} (e.g. `export {TOKEN_ENV}=$(openssl rand -hex 16)`) "
            "or listen on 127.0.0.1"
        )


def session_proof(token: str) -> str:
    """What the auth cookie holds: proves the token was given without storing it."""
    return hmac.new(token.encode(), b"rqjobs-web-session", hashlib.sha256).hexdigest()


def token_matches(token: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(token.encode(), given.encode())


def cookie_matches(token: str, cookie: str | None) -> bool:
    return cookie is not None and hmac.compare_digest(session_proof(token).encode(), cookie.encode())


class CsrfSigner:
    """Form tokens bound to a browser's random cookie by an HMAC with a process secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def token_for(self, nonce: str) -> str:
        return hmac.new(self.secret, nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.token_for(nonce).encode(), token.encode())
