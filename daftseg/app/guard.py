"""What keeps other web pages out of the app: a browser runs pages of every site the user visits,
and any of them can send requests to 127.0.0.1. Checked before any handler runs, in this order:

1. Host: 127.0.0.1, localhost or [::1] with the port the request came in on (or a ``--host``
   address). A page of a site whose name re-resolves to 127.0.0.1 (DNS rebinding) sends its own
   name, and is refused (403).
2. The launch's secret: the printed link ``/?token=...`` sets a cookie (HttpOnly, SameSite=Strict,
   named after the port because cookies ignore ports); every other request needs that cookie or
   ``Authorization: Bearer <token>`` (scripts). Otherwise 403 with how to get in.
3. POST/PUT/DELETE whose ``Origin`` is not the app's own: 403.
4. Bodies: JSON endpoints take ``application/json``, uploads ``application/octet-stream`` (415
   otherwise); a cross-site page cannot send either without a CORS preflight, which this server
   never grants (it sends no CORS headers).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qs

from starlette.responses import HTMLResponse, JSONResponse, Response

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
STATE_CHANGING = {"POST", "PUT", "DELETE", "PATCH"}
UPLOAD_PATH = "/api/upload"
COOKIE_PREFIX = "daftseg_token_"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def host_name(address: str) -> str:
    """An address as it appears in a Host header (IPv6 in brackets), lower case."""
    address = address.strip().lower()
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def allowed_hosts(port: int | None, extra: Iterable[str] = ()) -> set[str]:
    """Host header values the app answers: each name with the port (and bare on port 80)."""
    names = {host_name(n) for n in (*LOOPBACK, *extra) if n}
    out = {f"{n}:{port}" for n in names} if port is not None else set()
    if port in (80, None):
        out |= names
    return out


def cookie_name(port: int | None) -> str:
    return f"{COOKIE_PREFIX}{port or 0}"


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


class Guard:
    """ASGI middleware applying the checks above to every HTTP request."""

    def __init__(self, app, token: str, hosts: Iterable[str] = ()) -> None:
        self.app, self.token, self.extra_hosts = app, token, tuple(hosts)

    def _matches(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return  # no websockets here
        refusal, set_cookie = self.check(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if set_cookie is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", set_cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def check(self, scope) -> tuple[Response | None, bytes | None]:
        """(the refusal, or None; the Set-Cookie value when the printed link is opened)."""
        headers: dict[str, str] = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        server = scope.get("server")
        port = server[1] if server else None
        path, method = scope.get("path", ""), scope.get("method", "GET").upper()
        api = path.startswith("/api/")
        host = headers.get("host", "").strip().lower()
        hosts = allowed_hosts(port, self.extra_hosts)
        if host not in hosts:
            return refuse(api, 403, f"host {host or '(none)'!r} is not this app's address; open the link "
                                    "daftseg-app printed"), None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        link_token = query.get("token", [None])[0]
        set_cookie = None
        if path == "/" and method == "GET" and self._matches(link_token):
            set_cookie = (f"{cookie_name(port)}={self.token}; Path=/; HttpOnly; SameSite=Strict").encode()
        elif not (self._matches(bearer(headers.get("authorization"))) or
                  self._matches(cookie(headers.get("cookie"), cookie_name(port)))):
            return refuse(api, 403, "not signed in: open the link daftseg-app printed when it started "
                                    "(http://127.0.0.1:PORT/?token=...), or send 'Authorization: Bearer "
                                    "<token>'"), None
        if method in STATE_CHANGING:
            origin = headers.get("origin")
            if origin is not None and origin.strip().lower() not in {f"http://{h}" for h in hosts}:
                return refuse(api, 403, f"requests from {origin!r} are refused: this app answers its own "
                                        "page only"), None
            if method != "DELETE":
                want = "application/octet-stream" if path == UPLOAD_PATH else "application/json"
                if media_type(headers.get("content-type")) != want:
                    return refuse(api, 415, f"{path} takes Content-Type: {want}"), None
        return None, set_cookie


def bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def refuse(api: bool, status: int, reason: str) -> Response:
    if api:
        return JSONResponse({"error": reason}, status_code=status)
    page = ("<!doctype html><meta charset='utf-8'><title>daftseg</title>"
            f"<p style='font:15px sans-serif'>daftseg-app: {escape(reason)}</p>")
    return HTMLResponse(page, status_code=status)


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;")
