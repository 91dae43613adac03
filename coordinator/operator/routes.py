"""The operator's page at `/operator`, its refresh at `/operator/status`, and its script
and style sheet, all behind one sign-in.

A browser signs in with HTTP basic auth: `coordinator.operator.user` and its password
(the internal secret unless `coordinator.operator.password` is set). It asks once and
sends the same credential with the page's every request after; `curl -u` works the same.
Without it, every route here answers 401 with a JSON error and the challenge that makes a
browser ask; an address that keeps giving a wrong one is refused for a while (429 with
Retry-After, sign_in_limit.py). The page only reads: nothing here changes the network.

Every value on the page is escaped (the HTML here, `textContent` in page.js), and the
answers forbid everything the page does not do itself (Content-Security-Policy): a file
name or a receiver's error cannot become markup or script.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
from importlib import resources
from string import Template

from aiohttp import web

from common.protocol.errors import CinError, Code
from common.web.http import Handler, error_response
from coordinator.keys import CONFIG, POPS, STATE
from coordinator.operator.sign_in_limit import SignInLimit, retry_after
from coordinator.operator.view import Cell, Snapshot, Table, snapshot

PAGE_PATH = "/operator"
STATUS_PATH = "/operator/status"
# The wrong sign-ins of each client address.
SIGN_INS = web.AppKey("operator_sign_ins", SignInLimit)
# How often the page asks for `STATUS_PATH` (milliseconds).
REFRESH_MS = 2000

_REALM = 'Basic realm="cin operator", charset="UTF-8"'
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text("utf-8")


_PAGE = Template(_static("page.html"))
_ASSETS = {"page.js": ("text/javascript", _static("page.js")),
           "page.css": ("text/css", _static("page.css"))}


def operator_only(handler: Handler) -> Handler:
    """`handler`, for the operator alone."""
    async def checked(request: web.Request) -> web.StreamResponse:
        refusal = _check(request)
        return refusal if refusal is not None else await handler(request)

    return checked


def _check(request: web.Request) -> web.Response | None:
    """None when the request carries the operator's credential; else the refusal."""
    limit = request.app[SIGN_INS]
    # The peer's own address: X-Forwarded-For is not read, since anyone can send it.
    address = request.remote or "-"
    wait = limit.refused_for(address)
    if wait is not None:
        refusal = error_response(CinError(Code.TOO_MANY_SIGN_INS))
        refusal.headers["Retry-After"] = retry_after(wait)
        refusal.headers.update(_HEADERS)
        return refusal
    authorization = request.headers.get("Authorization")
    if _signed_in(request, authorization or ""):
        limit.succeeded(address)
        return None
    if authorization is not None:
        limit.failed(address)
    refusal = error_response(CinError(
        Code.NOT_AUTHENTICATED, "sign in with the operator's user and password "
                                "(coordinator.operator in the config)"))
    refusal.headers["WWW-Authenticate"] = _REALM
    refusal.headers.update(_HEADERS)
    return refusal


def _signed_in(request: web.Request, authorization: str) -> bool:
    config = request.app[CONFIG]
    operator = config.coordinator.operator
    scheme, _, encoded = authorization.partition(" ")
    given_user, given_password = b"", b""
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        given_user, _, given_password = decoded.partition(b":")
    # Both compared whole, whatever the first says: the time taken tells nothing.
    user_ok = hmac.compare_digest(given_user, operator.user.encode())
    password_ok = hmac.compare_digest(
        given_password, operator.password_or(config.internal_secret).encode())
    return user_ok and password_ok


async def _snapshot(request: web.Request) -> Snapshot:
    return await snapshot(request.app[POPS].status(), request.app[STATE])


async def page(request: web.Request) -> web.Response:
    shown = await _snapshot(request)
    tables = {name.replace("-", "_"): _tbody(table) for name, table in shown.tables.items()}
    notes = {f"{name}_note": html.escape(table.note)
             for name, table in zip(tables, shown.tables.values(), strict=True)}
    body = _PAGE.substitute(
        coordinator=html.escape(request.app[CONFIG].coordinator.public_url),
        generated=html.escape(shown.generated),
        refresh_ms=str(REFRESH_MS),
        refresh_every=f"{REFRESH_MS / 1000:g} s",
        summary=_summary(shown.summary),
        **tables, **notes)
    return web.Response(text=body, content_type="text/html", charset="utf-8",
                        headers=_HEADERS)


async def status(request: web.Request) -> web.Response:
    return web.json_response((await _snapshot(request)).to_json(), headers=_HEADERS)


async def asset(request: web.Request) -> web.Response:
    found = _ASSETS.get(request.match_info["name"])
    if found is None:
        raise CinError(Code.NOT_FOUND, request.path)
    content_type, text = found
    return web.Response(text=text, content_type=content_type, charset="utf-8",
                        headers=_HEADERS)


def _cell(cell: Cell, tag: str = "td") -> str:
    text = html.escape(cell.text)
    if cell.tone is None:
        return f"<{tag}>{text}</{tag}>"
    return f'<{tag}><span class="tone tone-{html.escape(cell.tone)}">{text}</span></{tag}>'


def _tbody(table: Table) -> str:
    if not table.rows:
        return f'<tr class="empty"><td colspan="99">{html.escape(table.empty)}</td></tr>'
    return "\n".join("<tr>" + "".join(_cell(cell) for cell in row) + "</tr>"
                     for row in table.rows)


def _summary(items: list[tuple[str, Cell]]) -> str:
    return "\n".join(f"<div><dt>{html.escape(label)}</dt>{_cell(value, 'dd')}</div>"
                     for label, value in items)


def add_routes(app: web.Application) -> None:
    app[SIGN_INS] = SignInLimit()
    app.router.add_get(PAGE_PATH, operator_only(page))
    app.router.add_get(STATUS_PATH, operator_only(status))
    app.router.add_get(PAGE_PATH + "/{name}", operator_only(asset))
