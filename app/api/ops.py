"""Operators' routes: Prometheus metrics (/metrics) and the Socket.IO Admin UI's page (/admin-ui/)."""

import hmac
import re
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, current_app, request
from prometheus_client import make_wsgi_app
from werkzeug.exceptions import NotFound

from app import metrics
from app.api.site import CONTENT_SECURITY_POLICY, send_listed
from app.errors import error_response
from app.services import delivery

bp = Blueprint("ops", __name__)

# prometheus_client's own exposition: content negotiation (text or OpenMetrics), gzip, `name[]`.
_exposition = make_wsgi_app()

ADMIN_UI_DIST = "node_modules/@socket.io/admin-ui/ui/dist"
MDI_FONT = "node_modules/@mdi/font"
# The icon font the Admin UI's page would load from a CDN, served from here instead.
MDI_FILES = {
    "mdi/css/materialdesignicons.min.css": f"{MDI_FONT}/css/materialdesignicons.min.css",
    "mdi/fonts/materialdesignicons-webfont.woff2": f"{MDI_FONT}/fonts/materialdesignicons-webfont.woff2",
    "mdi/fonts/materialdesignicons-webfont.woff": f"{MDI_FONT}/fonts/materialdesignicons-webfont.woff",
    "mdi/fonts/materialdesignicons-webfont.ttf": f"{MDI_FONT}/fonts/materialdesignicons-webfont.ttf",
}
_REMOTE_STYLESHEET = re.compile(r'<link rel="stylesheet" href="https?://[^"]*">')
_LOCAL_ICONS = '<link rel="stylesheet" href="mdi/css/materialdesignicons.min.css">'
# The Admin UI (Vue 2 + Vuetify) writes its theme into a <style> element at run time: inline
# styles are allowed on its pages, nothing else beyond this origin.
ADMIN_UI_CSP = f"{CONTENT_SECURITY_POLICY}; style-src 'self' 'unsafe-inline'"


@bp.get("/metrics")
def metrics_exposition():
    """This process's Prometheus metrics (text exposition); with METRICS_TOKEN set, for that bearer only."""
    expected = current_app.config["METRICS_TOKEN"]
    if expected:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            return error_response(401, "unauthorized", "This route needs the metrics token (METRICS_TOKEN).")
    presence = delivery.current().presence
    # This process's own sockets: with shared presence they are mirrored in `local`.
    metrics.sample_presence((presence.local if presence.shared else presence).sockets())
    # HEAD is answered by Flask from the GET; prometheus_client's app knows GET only.
    return Response.from_app(_exposition, {**request.environ, "REQUEST_METHOD": "GET"})


@bp.get("/admin-ui/")
def admin_ui_index():
    """The Socket.IO Admin UI's page, with its icon font from this origin (404 unless enabled)."""
    _admin_ui_enabled()
    try:
        page = _admin_ui_page(current_app.config["PUBLIC_DIR"])
    except FileNotFoundError:  # `npm ci` in public/ not run: like any other file that is not there
        raise NotFound() from None
    return Response(page, mimetype="text/html", headers={"Content-Security-Policy": ADMIN_UI_CSP})


@bp.get("/admin-ui/<path:filename>")
def admin_ui(filename: str):
    """The Admin UI's scripts, styles and images, from its npm package (404 unless enabled)."""
    _admin_ui_enabled()
    response = send_listed(_admin_ui_files(current_app.config["PUBLIC_DIR"]), filename)
    response.headers["Content-Security-Policy"] = ADMIN_UI_CSP
    return response


def _admin_ui_enabled() -> None:
    if "admin_ui" not in current_app.extensions:
        raise NotFound()


@cache
def _admin_ui_files(public_dir: Path) -> dict[str, str]:
    """URL under /admin-ui/ -> file under PUBLIC_DIR: the package's built UI and the icon font."""
    dist = public_dir / ADMIN_UI_DIST
    files = {
        path.relative_to(dist).as_posix(): f"{ADMIN_UI_DIST}/{path.relative_to(dist).as_posix()}"
        for path in dist.rglob("*")
        if path.is_file() and path.name != "index.html"
    }
    return {**files, **MDI_FILES}


@cache
def _admin_ui_page(public_dir: Path) -> str:
    """The package's index.html without its CDN stylesheets (a web font and the icon font)."""
    page = (public_dir / ADMIN_UI_DIST / "index.html").read_text()
    return _REMOTE_STYLESHEET.sub("", page).replace("</title>", "</title>" + _LOCAL_ICONS, 1)
