"""The HTTP surface through the Flask test client: browser-client files, security headers, the
headers of error answers, and the limits the OpenAPI document states."""

import io
import json
import re
import time
from html.parser import HTMLParser
from urllib.parse import urlparse

import jwt as pyjwt
import pytest
from marshmallow import ValidationError
from werkzeug.exceptions import TooManyRequests, Unauthorized
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app.models import NotificationStatus
from app.schemas import MAX_LIST_LIMIT, MAX_USER_ID_LENGTH, CreateNotificationsSchema
from app.services import inbox

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
CHALLENGE = 'Bearer realm="notifications"'
INVALID_TOKEN_CHALLENGE = 'Bearer realm="notifications", error="invalid_token"'
API_CALLS = [
    ("get", "/v1/notifications"),
    ("put", "/v1/notifications/x/read"),
    ("delete", "/v1/notifications/x"),
    ("post", "/v1/admin/notifications"),
]


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"] == code


def unacceptable_tokens(secret: str) -> dict[str, str]:
    """Tokens that are present but refused: each reaches a different Flask-JWT-Extended loader."""
    now = int(time.time())
    claims = {"sub": "alice", "exp": now + 600}
    return {
        "garbage": "not.a.token",
        "expired": pyjwt.encode({**claims, "exp": now - 10}, secret, algorithm="HS256"),
        "wrong key": pyjwt.encode(claims, "another-secret-another-secret-xx", algorithm="HS256"),
        "no sub": pyjwt.encode({"exp": now + 600}, secret, algorithm="HS256"),
    }


class _Loads(HTMLParser):
    """Collects the URLs a page loads by itself (scripts, stylesheets, images, icons)."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe") and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def page_loads(html: str) -> list[str]:
    parser = _Loads()
    parser.feed(html)
    return parser.urls


# ---- /client/: an allow-list ---------------------------------------------------------------


def test_client_serves_every_file_its_page_loads(client):
    page = client.get("/client/")
    assert page.status_code == 200
    loads = page_loads(page.get_data(as_text=True))
    assert {"client.js", "style.css", "vendor/socket.io.min.js"} <= set(loads)
    for url in loads:
        assert not urlparse(url).netloc and not url.startswith("/"), f"the page loads {url} from elsewhere"
        response = client.get(f"/client/{url}")
        assert response.status_code == 200, url
        assert response.data
    source_map = client.get("/client/vendor/socket.io.min.js.map")
    assert source_map.status_code == 200 and json.loads(source_map.data)["version"] == 3


@pytest.mark.parametrize(
    "path",
    [
        "package.json",
        "package-lock.json",
        "node_modules/.package-lock.json",
        "node_modules/socket.io-client/package.json",
        "node_modules/socket.io-client/dist/socket.io.min.js",
        "./package.json",
        "a/../package.json",
        "vendor/../package.json",
        "./node_modules/socket.io-client/package.json",
        "vendor/socket.io.js",
        "vendor/../../config.py",
        "index.html/",
        "nope.html",
    ],
)
def test_client_serves_nothing_else(client, path):
    response = client.get(f"/client/{path}")
    assert_error(response, 404, "not_found")
    assert b"dependencies" not in response.data


# ---- security headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/client/", 200),
        ("get", "/client/client.js", 200),
        ("get", "/client/vendor/socket.io.min.js", 200),
        ("get", "/healthz", 200),
        ("get", "/openapi.json", 200),
        ("get", "/v1/notifications", 200),
        ("get", "/v1/notifications?limit=0", 400),
        ("get", "/nowhere", 404),
        ("get", "/client/package.json", 404),
        ("patch", "/v1/notifications", 405),
        ("put", "/v1/notifications/x/read", 404),
    ],
)
def test_every_response_has_the_security_headers(client, auth_header, method, path, status):
    response = getattr(client, method)(path, headers=auth_header("alice"))
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


def test_security_headers_on_401_and_500(client, auth_header, monkeypatch):

    unauthorized = client.get("/v1/notifications")
    monkeypatch.setattr(inbox, "list_notifications", lambda *args, **kwargs: 1 / 0)
    broken = client.get("/v1/notifications", headers=auth_header("alice"))
    assert (unauthorized.status_code, broken.status_code) == (401, 500)
    for response in (unauthorized, broken):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, name


def test_a_header_the_view_set_is_kept(app, client):
    @app.get("/framed")
    def framed():
        return "", 204, {"X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "default-src 'none'"}

    response = client.get("/framed")
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers.getlist("Content-Security-Policy") == ["default-src 'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


# ---- bodies sent in chunks ------------------------------------------------------------------


class ChunkedInput(io.BytesIO):
    """Stands for eventlet's input of a chunked request: decoded, ended by the last chunk."""

    chunked_input = True


def post_chunked(app, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    """POST `body` as eventlet passes a chunked request on: no Content-Length, a `chunked_input`
    stream (the test client would add a Content-Length)."""
    environ = EnvironBuilder(
        path=path, method="POST", headers={**headers, "Transfer-Encoding": "chunked"}
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.pop("wsgi.input_terminated", None)
    environ["wsgi.input"] = ChunkedInput(body)
    answer, status, _headers = run_wsgi_app(app, environ, buffered=True)
    return int(status.split()[0]), json.loads(b"".join(answer))


@pytest.mark.config(MAX_CONTENT_LENGTH=100)
def test_a_chunked_body_is_read_up_to_the_size_limit(app, client, auth_header):
    headers = {**auth_header("root", admin=True), "Content-Type": "application/json"}
    compact = json.dumps({"userIds": ["alice"], "message": "m"})
    exactly = (compact[:-1] + " " * (100 - len(compact)) + "}").encode()
    status, answer = post_chunked(app, "/v1/admin/notifications", exactly, headers)
    assert status == 201, answer
    status, answer = post_chunked(app, "/v1/admin/notifications", exactly + b" ", headers)
    assert (status, answer["error"]) == (413, "payload_too_large")
    assert len(client.get("/v1/notifications", headers=auth_header("alice")).get_json()) == 1


# ---- headers of error answers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("patch", "/v1/notifications", {"GET"}),
        ("post", "/v1/notifications/x/read", {"PUT"}),
        ("get", "/v1/admin/notifications", {"POST"}),
        ("delete", "/healthz", {"GET"}),
        ("post", "/openapi.json", {"GET"}),
    ],
)
def test_405_says_which_methods_are_allowed(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert_error(response, 405, "method_not_allowed")
    methods = {m.strip() for m in response.headers.get("Allow", "").split(",")}
    assert allowed <= methods and method.upper() not in methods
    assert response.content_type == "application/json"


def test_an_http_error_keeps_its_own_headers(app, client):
    @app.get("/busy")
    def busy():
        raise TooManyRequests(retry_after=30)

    response = client.get("/busy")
    assert_error(response, 429, "too_many_requests")
    assert response.headers["Retry-After"] == "30"
    assert response.headers.getlist("Content-Type") == ["application/json"]


@pytest.mark.parametrize(("method", "path"), API_CALLS)
def test_401_without_a_token_challenges_for_one(client, method, path):
    for headers in ({}, {"Authorization": "Basic YTpi"}):
        response = getattr(client, method)(path, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers.getlist("WWW-Authenticate") == [CHALLENGE]
    response = getattr(client, method)(path, headers={"Authorization": "Bearer"})
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)


@pytest.mark.parametrize("kind", list(unacceptable_tokens("k" * 32)))
def test_401_with_an_unacceptable_token_says_invalid_token(client, app, kind):
    headers = {"Authorization": f"Bearer {unacceptable_tokens(app.config['JWT_SECRET_KEY'])[kind]}"}
    for method, path in API_CALLS:
        response = getattr(client, method)(path, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers.getlist("WWW-Authenticate") == [INVALID_TOKEN_CHALLENGE]


def test_any_401_gets_a_challenge(app, client):
    @app.get("/locked")
    def locked():
        raise Unauthorized()

    response = client.get("/locked")
    assert_error(response, 401, "unauthorized")
    assert response.headers.getlist("WWW-Authenticate") == [CHALLENGE]


# ---- the OpenAPI document states the limits -----------------------------------------------


def operations(spec):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def resolve(spec, schema):
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


@pytest.mark.config(MAX_MESSAGE_LENGTH=321, MAX_RECIPIENTS=7)
def test_openapi_states_the_body_limits_of_the_running_app(client):
    spec = client.get("/openapi.json").get_json()
    body = spec["paths"]["/v1/admin/notifications"]["post"]["requestBody"]["content"]["application/json"]
    create = resolve(spec, body["schema"])
    assert create["additionalProperties"] is False
    message, user_ids = create["properties"]["message"], create["properties"]["userIds"]
    assert (message["minLength"], message["maxLength"]) == (1, 321)
    assert (user_ids["minItems"], user_ids["maxItems"]) == (1, 7)
    item = user_ids["items"]
    assert (item["minLength"], item["maxLength"]) == (1, MAX_USER_ID_LENGTH)
    assert message["pattern"] == item["pattern"]


# Accepted, then refused: blank by Python's measure (not ECMA-262's `\s`), or with NUL.
TEXT_SAMPLES = ["a", " a ", "é", "\u200b", "\ufeff", "x" * 3]
TEXT_SAMPLES += ["", " ", "\t\n\r\x0b\x0c", "\x1c\x1f", "\x85\xa0", "\u3000\u2028", "a\x00", "\x00", " \x00 "]


@pytest.mark.parametrize("text", TEXT_SAMPLES)
def test_openapi_text_pattern_refuses_what_the_schema_refuses(client, app, text):
    spec = client.get("/openapi.json").get_json()
    create = spec["components"]["schemas"]["CreateNotifications"]["properties"]
    documented = re.search(create["message"]["pattern"], text) is not None
    with app.app_context():
        try:
            CreateNotificationsSchema().load({"userIds": [text], "message": text})
            accepted = True
        except ValidationError as exc:
            assert set(exc.messages) == {"userIds", "message"}
            accepted = False
    assert documented == accepted


def test_openapi_states_the_query_limits(client, admin_post, auth_header):
    spec = client.get("/openapi.json").get_json()
    parameters = {p["name"]: p["schema"] for p in spec["paths"]["/v1/notifications"]["get"]["parameters"]}
    assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, MAX_LIST_LIMIT)
    assert parameters["status"]["enum"] == [s.value for s in NotificationStatus]
    assert not any(schema.get("nullable") for schema in parameters.values())
    for _ in range(2):
        admin_post(["alice"])
    link = client.get("/v1/notifications?limit=1", headers=auth_header("alice")).headers["Link"]
    cursor = re.search(r"cursor=([^&>]+)", link).group(1)
    assert re.search(parameters["cursor"]["pattern"], cursor)
    assert not re.search(parameters["cursor"]["pattern"], "%%%")


def test_openapi_documents_auth_rate_limit_and_size_answers(client):
    spec = client.get("/openapi.json").get_json()
    api = [(path, method, op) for path, method, op in operations(spec) if path.startswith("/v1/")]
    assert len(api) == 13  # 6 of notifications, 7 of preferences and topics
    for path, method, operation in api:
        responses = operation["responses"]
        assert "security" not in operation, (method, path)
        challenge = responses["401"]["headers"]["WWW-Authenticate"]
        assert challenge["required"] and re.search(challenge["schema"]["pattern"], INVALID_TOKEN_CHALLENGE)
        assert responses["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
        assert resolve(spec, responses["429"]["content"]["application/json"]["schema"])["required"] == [
            "error",
            "message",
        ]
    assert "413" in spec["paths"]["/v1/admin/notifications"]["post"]["responses"]
    for public in ("/healthz", "/openapi.json"):
        assert spec["paths"][public]["get"]["security"] == []
        assert "401" not in spec["paths"][public]["get"]["responses"]
