"""The HTTP surface of the real server (eventlet): raw paths under /client/, chunked bodies, headers.

Requests go through http.client, which sends a path exactly as given (no dot-segment
removal) and a body from an iterator with `Transfer-Encoding: chunked`.
"""

import http.client
import json

HTTP_TIMEOUT = 10  # seconds for each request
MAX_CONTENT_LENGTH = 4 * 1024 * 1024  # the server's default body limit (config.py)
CHUNK = 64 * 1024


def send(server, method: str, path: str, body=None, headers=None):
    """One request on a fresh connection: (status, headers, body); `body` may be an iterator of chunks."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def chunks(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def admin_headers(server) -> dict:
    return {"Authorization": f"Bearer {server.token('ops', admin=True)}", "Content-Type": "application/json"}


def stored(server) -> int:
    return server.rows("SELECT COUNT(*) FROM notifications")[0][0]


def test_client_files_outside_the_allow_list_are_404_whatever_the_path_spelling(live_server):
    served = []
    for path in [
        "/client/./package.json",
        "/client/a/../package.json",
        "/client/vendor/../package.json",
        "/client/./package-lock.json",
        "/client/a/../package-lock.json",
        "/client/./node_modules/.package-lock.json",
        "/client/a/../node_modules/socket.io-client/package.json",
        "/client/vendor/../node_modules/socket.io-client/dist/socket.io.js",
        "/client/%2e/package.json",
        "/client/a/%2e%2e/package.json",
    ]:
        status, headers, body = send(live_server, "GET", path)
        if status != 404 or json.loads(body).get("error") != "not_found":
            served.append((path, status, body[:80]))
    assert not served, f"served outside the allow-list: {served}"


def test_page_and_api_answers_carry_security_and_error_headers(live_server):
    for path in [
        "/client/",
        "/client/index.html",
        "/client/client.js",
        "/client/style.css",
        "/client/vendor/socket.io.min.js",
        "/client/vendor/socket.io.min.js.map",
    ]:
        status, headers, body = send(live_server, "GET", path)
        assert status == 200 and body, path
        assert headers["Content-Security-Policy"].startswith("default-src 'self'"), path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
    status, headers, _ = send(live_server, "PATCH", "/v1/notifications")
    assert status == 405 and "GET" in headers["Allow"]
    status, headers, _ = send(live_server, "GET", "/v1/notifications")
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="notifications"'
    assert headers["X-Frame-Options"] == "DENY"


def test_a_chunked_json_body_is_read(live_server):
    body = json.dumps({"userIds": ["alice", "bob"], "message": "sent in chunks"}).encode()
    headers = admin_headers(live_server)
    status, _, answer = send(live_server, "POST", "/v1/admin/notifications", chunks(body, 7), headers)
    assert status == 201, answer
    notes = json.loads(answer)["notifications"]
    assert sorted(n["userId"] for n in notes) == ["alice", "bob"]
    assert {n["message"] for n in notes} == {"sent in chunks"}
    assert stored(live_server) == 2


def test_a_chunked_body_over_the_size_limit_is_413_and_stores_nothing(live_server):
    padding = "x" * (MAX_CONTENT_LENGTH + CHUNK)
    body = json.dumps({"userIds": ["alice"], "message": "m", "padding": padding}).encode()
    headers = admin_headers(live_server)
    status, _, answer = send(live_server, "POST", "/v1/admin/notifications", chunks(body, CHUNK), headers)
    assert status == 413, answer[:200]
    assert json.loads(answer)["error"] == "payload_too_large"
    assert stored(live_server) == 0
    assert send(live_server, "GET", "/healthz")[0] == 200
