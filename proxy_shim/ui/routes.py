"""``/ui``: the admin page's static files, read once from the package and served from memory.

Only files shipped in ``proxy_shim/ui/static`` can be named (a fixed table, so no path from the
URL ever reaches the file system). Every answer carries a strict Content-Security-Policy: the page
runs its own modules only and talks to this origin only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate on every load (cheap: ETag) so an upgraded shim never runs a stale page.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One shipped file, held in memory."""

    body: bytes
    content_type: str
    etag: str


def _walk(directory: Traversable, prefix: str = "") -> dict[str, StaticFile]:
    found: dict[str, StaticFile] = {}
    for entry in directory.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.update(_walk(entry, f"{name}/"))
            continue
        suffix = "." + entry.name.rpartition(".")[2]
        content_type = _CONTENT_TYPES.get(suffix)
        if content_type is None:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        found[name] = StaticFile(body, content_type, etag)
    return found


def load_static() -> dict[str, StaticFile]:
    """Every servable file under ``static/``, keyed by its path relative to it."""
    return _walk(resources.files(__package__ or "proxy_shim.ui").joinpath("static"))


_FILES = load_static()


def _serve(request: Request, name: str) -> Response:
    file = _FILES.get(name)
    if file is None:
        raise StarletteHTTPException(status_code=404, detail="Not Found")
    headers = {**SECURITY_HEADERS, "ETag": file.etag}
    if request.headers.get("if-none-match") == file.etag:
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.content_type, headers=headers)


@router.get("")
async def ui_root() -> RedirectResponse:
    """``/ui`` -> ``/ui/`` so the page's relative URLs resolve under any path prefix."""
    return RedirectResponse("ui/", status_code=307)


@router.get("/")
async def ui_index(request: Request) -> Response:
    """The single page."""
    return _serve(request, "index.html")


@router.get("/static/{name:path}")
async def ui_static(name: str, request: Request) -> Response:
    """A shipped stylesheet, module or icon."""
    return _serve(request, name)
