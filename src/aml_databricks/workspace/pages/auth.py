"""Signing in to the pages: the workspace token, given once (`/login?token=…` or the form), becomes an
HttpOnly SameSite=Strict cookie holding a keyed hash of it — never the token itself.

SameSite=Strict also keeps other sites from posting Cancel with the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

COOKIE = "aml_databricks_session"


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"aml-databricks pages session", hashlib.sha256).hexdigest()


def signed_in(request: Request, token: str) -> bool:
    return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), session_value(token).encode())


def login_url(host: str, token: str) -> str:
    """The one-line URL `workspace serve` prints: opening it signs the browser in."""
    return f"{host}/login?token={quote(token)}"


def login_url_for(request: Request) -> str:
    return "/login?next=" + quote(request.url.path, safe="/")


def _safe_next(value: str) -> str:
    # only a path on this server: `//evil.example` or a scheme would send the user elsewhere
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


def login_endpoint(token: str, render: Callable[..., Response]) -> Callable[[Request], Any]:
    async def login(request: Request) -> Response:
        given = request.query_params.get("token")
        next_page = _safe_next(request.query_params.get("next", "/"))
        if request.method == "POST":
            form = await request.form()
            given = str(form.get("token", ""))
            next_page = _safe_next(str(form.get("next", "/")))
        if given is None:
            return render("login.html", next=next_page, failed=False)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return render("login.html", 403, next=next_page, failed=True)
        response = RedirectResponse(next_page, status_code=303)
        response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict", path="/")
        return response

    return login
