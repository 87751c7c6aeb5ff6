"""End-to-end tests of the browser client (public/) in headless Chromium.

They drive the page served at /client/ by a real server (the `live_server`
fixture of conftest.py) with Playwright's sync API, and assert what a user
sees. Debian's chromium is used (never a browser downloaded by Playwright).
Without playwright or /usr/bin/chromium the module is skipped, unless
REQUIRE_SERVICES=1, in which case it fails.
"""

import base64
import json
import re
import time
from urllib.parse import urlparse

import pytest
import requests

from tests.support.browser import chromium_browser, require_chromium
from tests.support.live_server import HTTP_TIMEOUT
from tests.support.tokens import bearer, mint_token, token_claims
from tests.support.wire import ADMIN_ROUTE

WAIT_MS = 10_000  # every wait on the page is bounded by this
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
EXPIRY_GRACE = 5  # seconds after a token's exp within which the server closes its socket (contract v2)
TOKEN_KEY = "notifications.accessToken"  # where the page stores its token

require_chromium()
from playwright.sync_api import expect  # noqa: E402  (after the check that it is installed)

# ---- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    with chromium_browser() as browser:
        yield browser


def watch(page):
    """Record what `page` requests and its uncaught errors; returns the check to run at the end:
    it only talked to localhost and raised no uncaught JavaScript error."""
    requested, page_errors = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    def check():
        foreign = [
            url
            for url in requested
            if urlparse(url).scheme not in ("data", "blob") and urlparse(url).hostname not in LOCAL_HOSTS
        ]
        assert not foreign, f"the page made requests to other hosts: {foreign}"
        assert not page_errors, f"uncaught JavaScript errors: {page_errors}"

    return check


@pytest.fixture
def page(chromium, live_server):
    """A fresh page (own storage); checks afterwards that it only talked to localhost
    and raised no uncaught JavaScript error."""
    vendor = requests.get(live_server.url + "/client/vendor/socket.io.min.js", timeout=HTTP_TIMEOUT)
    assert vendor.status_code == 200, (
        "the server does not serve the socket.io client; run `npm ci` in public/ first"
    )

    context = chromium.new_context()
    page = context.new_page()
    check = watch(page)
    yield page
    context.close()
    check()


@pytest.fixture
def second_tab(page):
    """Another tab of the same browser as `page` (same context, so same storage), checked the same way."""
    tab = page.context.new_page()
    check = watch(tab)
    yield tab
    tab.close()
    check()


# ---- helpers -----------------------------------------------------------------


def open_client(page, live_server):
    page.goto(live_server.url + "/client/", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("disconnected", timeout=WAIT_MS)


def connect(page, token):
    page.fill("#token", token, timeout=WAIT_MS)
    page.click("#connect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)


def item(page, text):
    """The list items whose message contains `text`."""
    return page.locator("#notifications > li.notification").filter(has_text=text)


def history(live_server, user_id):
    response = live_server.list_notifications(user_id)
    assert response.status_code == 200, response.text
    return {n["id"]: n for n in response.json()}


def send_cli(live_server, user_id, message):
    result = live_server.cli("send-notification", "--user", user_id, message)
    assert result.returncode == 0, f"send-notification failed:\n{result.stdout}\n{result.stderr}"
    return result


def short_token(live_server, user_id, seconds=3, secret=None):
    """An access token for `user_id` that expires `seconds` (at most one more) from now,
    signed with the server's key or `secret`; returns the token and its exp."""
    token = mint_token(secret or live_server.secret, user_id, expires_in=seconds)
    return token, token_claims(token)["exp"]


def ms_until(deadline, margin=3):
    """Milliseconds from now until `margin` seconds after the unix time `deadline`."""
    return max(0, int((deadline + margin - time.time()) * 1000))


def wait_until(page, predicate, timeout_ms, what):
    """Let the page run (so Playwright delivers its events) until `predicate()` holds."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_ms} ms waiting for: {what}")
        page.wait_for_timeout(50)


class SocketWatch:
    """Every WebSocket the page opens, the frames on them, and its Socket.IO polling requests."""

    def __init__(self, page):
        self.opened, self.closed, self.received, self.sent, self.polls = [], [], [], [], []
        page.on("websocket", self._websocket)
        page.on("request", lambda request: "/socket.io/" in request.url and self.polls.append(request.url))

    def _websocket(self, ws):
        self.opened.append(ws.url)
        ws.on("framereceived", lambda payload: self.received.append(str(payload)))
        ws.on("framesent", lambda payload: self.sent.append(str(payload)))
        ws.on("close", lambda _ws: self.closed.append(ws.url))

    def events_received(self, name):
        """Socket.IO events `name` the server sent (engine.io message 4, socket.io EVENT 2)."""
        return [f for f in self.received if f.startswith("42") and f'"{name}"' in f[:60]]

    def acks_received(self):
        """Payloads of the acknowledgements the server sent (engine.io 4, socket.io ACK 3)."""
        matches = (re.fullmatch(r"43\d+(\[.*\])", f, re.S) for f in self.received)
        return [json.loads(m.group(1)) for m in matches if m]


def stored_token(page):
    return page.evaluate(f"localStorage.getItem({json.dumps(TOKEN_KEY)})")


def send_with_data(live_server, user_ids, message, data):
    """POST /v1/admin/notifications with a `data` object, expecting 201: the notifications created."""
    response = requests.post(
        live_server.url + ADMIN_ROUTE,
        json={"userIds": user_ids, "message": message, "data": data},
        headers=bearer(live_server.token("admin", admin=True)),
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 201, response.text
    return response.json()["notifications"]


def server_unread(live_server, user_id):
    """The user's unread count as GET /v1/notifications/unread-count answers it."""
    response = requests.get(
        live_server.url + "/v1/notifications/unread-count",
        headers=bearer(live_server.token(user_id)),
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()["count"]


def expect_unread(page, count):
    """The badge shows `count` (hidden at 0), and "Mark all read" is enabled exactly when it is not 0."""
    badge = page.locator("#unread-badge")
    expect(badge).to_have_attribute("data-count", str(count), timeout=WAIT_MS)
    mark_all = page.locator("#mark-all-read")
    if count:
        expect(badge).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#unread-count")).to_have_text(str(count), timeout=WAIT_MS)
        expect(mark_all).to_be_enabled(timeout=WAIT_MS)
    else:
        expect(badge).to_be_hidden(timeout=WAIT_MS)
        expect(mark_all).to_be_disabled(timeout=WAIT_MS)


# ---- tests -------------------------------------------------------------------


def test_connect_and_receive_live_notification(page, live_server):
    open_client(page, live_server)
    connect(page, live_server.token("alice"))
    # A marker on the window proves the item arrives without a page reload.
    page.evaluate("window.__marker = 'same page'")

    send_cli(live_server, "alice", "hello")

    hello = item(page, "hello")
    expect(hello).to_have_count(1, timeout=WAIT_MS)
    expect(hello.locator(".message")).to_have_text("hello", timeout=WAIT_MS)
    expect(hello).to_have_attribute("data-status", "DELIVERED", timeout=WAIT_MS)
    expect(hello.locator(".status")).to_have_text("DELIVERED", timeout=WAIT_MS)
    expect(hello.locator(".created-at")).not_to_be_empty(timeout=WAIT_MS)
    assert page.evaluate("window.__marker") == "same page"

    page.click("#disconnect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("disconnected", timeout=WAIT_MS)


def test_notification_sent_before_connecting_arrives_as_pending(page, live_server):
    frames = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    open_client(page, live_server)

    [sent] = live_server.send(["bob"], "sent while you were away")
    assert sent["status"] == "PENDING"  # bob has no connection yet

    connect(page, live_server.token("bob"))
    away = page.locator(f'#notifications > li.notification[data-id="{sent["id"]}"]')
    expect(away).to_have_count(1, timeout=WAIT_MS)
    expect(away.locator(".message")).to_have_text("sent while you were away", timeout=WAIT_MS)
    expect(away).to_have_attribute("data-status", "DELIVERED", timeout=WAIT_MS)
    expect(away.locator(".status")).to_have_text("DELIVERED", timeout=WAIT_MS)
    # It came through the pending_notifications event, not only the history request.
    assert any("pending_notifications" in str(f) and sent["id"] in str(f) for f in frames), (
        "no pending_notifications event carried the notification"
    )

    # While disconnected nothing shows up; after reconnecting it does, once.
    page.click("#disconnect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("disconnected", timeout=WAIT_MS)
    send_cli(live_server, "bob", "sent while disconnected")
    page.wait_for_timeout(1000)
    expect(item(page, "sent while disconnected")).to_have_count(0, timeout=WAIT_MS)

    page.click("#connect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
    later = item(page, "sent while disconnected")
    expect(later).to_have_count(1, timeout=WAIT_MS)
    expect(later).to_have_attribute("data-status", "DELIVERED", timeout=WAIT_MS)
    expect(item(page, "sent while you were away")).to_have_count(1, timeout=WAIT_MS)


def test_message_is_rendered_as_text_not_html(page, live_server):
    payload = '<img src=x onerror="window.__xss=1">'
    open_client(page, live_server)
    live_server.send(["carol"], payload)  # delivered as pending
    connect(page, live_server.token("carol"))
    live_server.send(["carol"], payload + " live")  # delivered live

    messages = page.locator("#notifications > li.notification .message")
    expect(messages).to_have_count(2, timeout=WAIT_MS)
    assert sorted(messages.all_text_contents()) == sorted([payload, payload + " live"])
    expect(page.locator("#notifications img")).to_have_count(0, timeout=WAIT_MS)
    page.wait_for_timeout(500)  # give a (wrongly) created image time to fail and fire onerror
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_mark_read_and_delete(page, live_server):
    open_client(page, live_server)
    token = live_server.token("dave")
    connect(page, token)

    [first] = live_server.send(["dave"], "first message")
    expect(item(page, "first message")).to_have_count(1, timeout=WAIT_MS)
    [second] = live_server.send(["dave"], "second message")
    expect(item(page, "second message")).to_have_count(1, timeout=WAIT_MS)
    # Newest first.
    expect(page.locator("#notifications > li.notification .message")).to_have_text(
        ["second message", "first message"], timeout=WAIT_MS
    )

    # Mark read: the item shows READ, and the server agrees.
    read_item = item(page, "first message")
    read_item.locator("button.mark-read").click(timeout=WAIT_MS)
    expect(read_item).to_have_attribute("data-status", "READ", timeout=WAIT_MS)
    expect(read_item.locator(".status")).to_have_text("READ", timeout=WAIT_MS)
    expect(read_item.locator("button.mark-read")).to_be_disabled(timeout=WAIT_MS)
    stored = history(live_server, "dave")
    assert stored[first["id"]]["status"] == "READ"
    assert stored[first["id"]]["readAt"] is not None

    # Delete: the item goes away, and the server no longer has it.
    item(page, "second message").locator("button.delete").click(timeout=WAIT_MS)
    expect(item(page, "second message")).to_have_count(0, timeout=WAIT_MS)
    assert second["id"] not in history(live_server, "dave")
    expect(page.locator("#error")).to_be_hidden(timeout=WAIT_MS)

    # A reload remembers the token and rebuilds the list from the history.
    page.reload(timeout=WAIT_MS)
    expect(page.locator("#token")).to_have_value(token, timeout=WAIT_MS)
    page.click("#connect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
    expect(item(page, "first message")).to_have_attribute("data-status", "READ", timeout=WAIT_MS)
    expect(page.locator("#notifications > li.notification")).to_have_count(1, timeout=WAIT_MS)

    # While disconnected the page hears of no change made elsewhere: a notification deleted
    # meanwhile stays in the list, and deleting it here shows the server's error.
    page.click("#disconnect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("disconnected", timeout=WAIT_MS)
    gone = requests.delete(
        f"{live_server.url}/v1/notifications/{first['id']}",
        headers=bearer(token),
        timeout=HTTP_TIMEOUT,
    )
    assert gone.status_code == 204
    again = requests.delete(
        f"{live_server.url}/v1/notifications/{first['id']}",
        headers=bearer(token),
        timeout=HTTP_TIMEOUT,
    )
    assert again.status_code == 404
    item(page, "first message").locator("button.delete").click(timeout=WAIT_MS)
    expect(page.locator("#error")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#error")).to_contain_text(again.json()["message"], timeout=WAIT_MS)


def _forged(token):
    """The same header and claims with a signature that is not the server's."""
    header, claims, _ = token.split(".")
    bogus = base64.urlsafe_b64encode(b"\0" * 32).rstrip(b"=").decode()
    return f"{header}.{claims}.{bogus}"


@pytest.mark.parametrize("kind", ["malformed", "bad-signature"])
def test_bad_token_shows_error(page, live_server, kind):
    token = "not-a-jwt" if kind == "malformed" else _forged(live_server.token("erin"))
    open_client(page, live_server)
    page.fill("#token", token, timeout=WAIT_MS)
    page.click("#connect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("error", timeout=WAIT_MS)
    detail = page.locator("#state-detail")
    expect(detail).not_to_be_empty(timeout=WAIT_MS)
    # The connect_error message is meant for a person, not a serialized object.
    assert not detail.text_content().lstrip().startswith(("{", "[")), detail.text_content()

    # A refused connection receives nothing.
    send_cli(live_server, "erin", "not for a refused connection")
    page.wait_for_timeout(1000)
    expect(page.locator("#notifications > li.notification")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("error", timeout=WAIT_MS)


def short_session(page, live_server, user_id: str):
    """The page connected with a token that has less than a minute left; (sockets, expiry badge, exp)."""
    sockets = SocketWatch(page)
    open_client(page, live_server)
    token, exp = short_token(live_server, user_id)
    connect(page, token)
    # Less than a minute left from the start: the page warns that a new token is needed.
    expiry = page.locator("#token-expiry")
    expect(expiry).to_have_attribute("data-level", "warn", timeout=WAIT_MS)
    return sockets, expiry, exp


def test_expired_token_ends_the_session(page, live_server):
    sockets, expiry, exp = short_session(page, live_server, "frank")
    expect(expiry).to_be_visible(timeout=WAIT_MS)
    expect(expiry).to_contain_text("new token", timeout=WAIT_MS)

    state = page.locator("#state")
    expect(state).to_have_text("expired", timeout=ms_until(exp + EXPIRY_GRACE))
    assert time.time() >= exp, "the session ended before the token expired"
    assert sockets.events_received("token_expired"), "no token_expired event reached the page"
    expect(page.locator("#state-detail")).to_contain_text("token expired", timeout=WAIT_MS)
    expect(page.locator("#error")).to_contain_text("access token expired", timeout=WAIT_MS)
    expect(page.locator("#token")).to_be_focused(timeout=WAIT_MS)
    expect(page.locator("#disconnect")).to_be_disabled(timeout=WAIT_MS)
    expect(expiry).to_be_hidden(timeout=WAIT_MS)

    # The server closed the socket (the page did not have to close it itself).
    wait_until(page, lambda: sockets.closed, WAIT_MS, "the page's WebSocket to close")
    assert not [f for f in sockets.sent if f.startswith("41")], "the page, not the server, left the namespace"

    # The close that follows does not overwrite the message, and nothing reconnects.
    page.wait_for_timeout(1500)
    expect(state).to_have_text("expired", timeout=WAIT_MS)
    assert len(sockets.opened) == 1 and not sockets.polls, (sockets.opened, sockets.polls)

    # Frank is offline now: a notification is stored PENDING and does not show up.
    [sent] = live_server.send(["frank"], "after the token expired")
    assert sent["status"] == "PENDING"
    page.wait_for_timeout(1000)
    expect(item(page, "after the token expired")).to_have_count(0, timeout=WAIT_MS)
    assert history(live_server, "frank")[sent["id"]]["status"] == "PENDING"
    assert len(sockets.opened) == 1 and not sockets.polls

    # A new token starts a new session, which gets what was stored meanwhile.
    connect(page, live_server.token("frank"))
    meanwhile = item(page, "after the token expired")
    expect(meanwhile).to_have_attribute("data-status", "DELIVERED", timeout=WAIT_MS)


def test_refresh_before_expiry_keeps_the_session(page, live_server):
    sockets, expiry, old_exp = short_session(page, live_server, "grace")

    # A token for the same user, entered while connected, goes over the live socket.
    fresh = live_server.token("grace")
    page.fill("#token", fresh, timeout=WAIT_MS)
    page.click("#connect", timeout=WAIT_MS)
    expect(page.locator("#state-detail")).to_have_text("token refreshed", timeout=WAIT_MS)
    assert time.time() < old_exp, "the refresh was answered only after the old token expired"
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
    expect(expiry).to_have_attribute("data-level", "ok", timeout=WAIT_MS)
    expect(expiry).to_contain_text("Token expires in", timeout=WAIT_MS)
    expect(page.locator("#error")).to_be_hidden(timeout=WAIT_MS)
    assert [f for f in sockets.sent if '"refresh_token"' in f], "no refresh_token event was sent"
    assert stored_token(page) == fresh
    assert len(sockets.opened) == 1, "the page reconnected instead of refreshing"

    # Past the old exp and the server's grace: still the same live connection.
    page.wait_for_timeout(ms_until(old_exp + EXPIRY_GRACE, margin=0.5))
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
    assert not sockets.events_received("token_expired")
    assert len(sockets.opened) == 1 and not sockets.closed and not sockets.polls

    [sent] = live_server.send(["grace"], "after the old token expired")
    assert sent["status"] == "DELIVERED"
    live = item(page, "after the old token expired")
    expect(live).to_have_count(1, timeout=WAIT_MS)
    expect(live).to_have_attribute("data-status", "DELIVERED", timeout=WAIT_MS)

    # REST calls use the new token (the old one would now get 401).
    live.locator("button.mark-read").click(timeout=WAIT_MS)
    expect(live).to_have_attribute("data-status", "READ", timeout=WAIT_MS)
    expect(page.locator("#error")).to_be_hidden(timeout=WAIT_MS)
    assert history(live_server, "grace")[sent["id"]]["status"] == "READ"


def test_refused_refresh_keeps_the_current_token(page, live_server):
    sockets = SocketWatch(page)
    open_client(page, live_server)
    # A little longer than 3 s: the test checks the socket is still live after the refusal.
    token, exp = short_token(live_server, "heidi", seconds=5)
    connect(page, token)

    wrong_key, _ = short_token(live_server, "heidi", seconds=3600, secret="not-the-server-key-" * 3)
    page.fill("#token", wrong_key, timeout=WAIT_MS)
    page.click("#connect", timeout=WAIT_MS)
    error = page.locator("#error")
    expect(error).to_be_visible(timeout=WAIT_MS)
    answers = [a for a in sockets.acks_received() if a and isinstance(a[0], dict) and "ok" in a[0]]
    assert answers and answers[-1][0]["ok"] is False, answers
    expect(error).to_contain_text(answers[-1][0]["error"], timeout=WAIT_MS)

    # Nothing changed: same socket, same token, still receiving live.
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
    assert stored_token(page) == token
    [sent] = live_server.send(["heidi"], "still connected")
    assert time.time() < exp, "the notification was sent only after the token expired"
    assert sent["status"] == "DELIVERED"
    expect(item(page, "still connected")).to_have_count(1, timeout=WAIT_MS)
    assert len(sockets.opened) == 1 and not sockets.closed

    # The old token's expiry still ends the session.
    expect(page.locator("#state")).to_have_text("expired", timeout=ms_until(exp + EXPIRY_GRACE))
    assert time.time() >= exp, "the session ended before the token expired"
    expect(error).to_contain_text("access token expired", timeout=WAIT_MS)  # the refusal is no longer shown
    expect(page.locator("#token")).to_be_focused(timeout=WAIT_MS)
    wait_until(page, lambda: sockets.closed, WAIT_MS, "the page's WebSocket to close")


# ---- the inbox: unread badge, "Mark all read", changes made elsewhere, links ----------------


def test_two_tabs_of_one_user_stay_in_step(page, second_tab, live_server):
    tabs = (page, second_tab)
    token = live_server.token("ivan")
    for tab in tabs:
        open_client(tab, live_server)
        connect(tab, token)
        expect_unread(tab, 0)
        # A marker on the window proves that what follows happens without a reload.
        tab.evaluate("window.__marker = 'same page'")

    ids = {}
    for n, message in enumerate(("one", "two", "three"), start=1):
        [sent] = live_server.send(["ivan"], message)
        ids[message] = sent["id"]
        for tab in tabs:
            expect(item(tab, message)).to_have_attribute("data-status", "DELIVERED", timeout=WAIT_MS)
            expect_unread(tab, n)

    # A read in tab 1 shows READ, with the server's readAt, in tab 2.
    item(page, "one").locator("button.mark-read").click(timeout=WAIT_MS)
    read_at = None
    for tab in tabs:
        one = item(tab, "one")
        expect(one).to_have_attribute("data-status", "READ", timeout=WAIT_MS)
        expect(one.locator(".status")).to_have_text("READ", timeout=WAIT_MS)
        expect(one.locator("button.mark-read")).to_be_disabled(timeout=WAIT_MS)
        read_at = read_at or history(live_server, "ivan")[ids["one"]]["readAt"]
        expect(one.locator(".read-at")).to_have_attribute("datetime", read_at, timeout=WAIT_MS)
        expect_unread(tab, 2)

    # A delete in tab 1 removes the item from tab 2.
    item(page, "two").locator("button.delete").click(timeout=WAIT_MS)
    for tab in tabs:
        expect(item(tab, "two")).to_have_count(0, timeout=WAIT_MS)
        expect(tab.locator("#notifications > li.notification")).to_have_count(2, timeout=WAIT_MS)
        expect_unread(tab, 1)

    # "Mark all read" in tab 1 clears the badge in both, and tab 2 shows the read-all's readAt.
    page.click("#mark-all-read", timeout=WAIT_MS)
    for tab in tabs:
        expect_unread(tab, 0)
        three = item(tab, "three")
        expect(three).to_have_attribute("data-status", "READ", timeout=WAIT_MS)
    stored = history(live_server, "ivan")
    assert set(stored) == {ids["one"], ids["three"]}
    assert stored[ids["one"]]["readAt"] == read_at  # already read: not touched by the read-all
    for tab in tabs:
        expect(item(tab, "three").locator(".read-at")).to_have_attribute(
            "datetime", stored[ids["three"]]["readAt"], timeout=WAIT_MS
        )
        expect(item(tab, "one").locator(".read-at")).to_have_attribute("datetime", read_at, timeout=WAIT_MS)
        expect(tab.locator("#error")).to_be_hidden(timeout=WAIT_MS)
        assert tab.evaluate("window.__marker") == "same page"
    assert server_unread(live_server, "ivan") == 0

    # The next notification is unread again in both.
    live_server.send(["ivan"], "four")
    for tab in tabs:
        expect(item(tab, "four")).to_have_attribute("data-status", "DELIVERED", timeout=WAIT_MS)
        expect_unread(tab, 1)


def test_badge_counts_notifications_live(page, live_server):
    open_client(page, live_server)
    expect_unread(page, 0)
    live_server.send(["judy"], "while away")  # stored PENDING: judy is not connected

    token = live_server.token("judy")
    connect(page, token)
    expect(item(page, "while away")).to_have_count(1, timeout=WAIT_MS)
    expect_unread(page, 1)

    # New notifications count at once, without a reload; someone else's do not.
    live_server.send(["someone-else"], "not for judy")
    [live] = live_server.send(["judy"], "live one")
    expect(item(page, "live one")).to_have_attribute("data-status", "DELIVERED", timeout=WAIT_MS)
    expect_unread(page, 2)
    live_server.send(["judy", "someone-else"], "live two")
    expect(item(page, "live two")).to_have_count(1, timeout=WAIT_MS)
    expect_unread(page, 3)
    page.wait_for_timeout(500)
    expect_unread(page, 3)
    assert server_unread(live_server, "judy") == 3

    # A read on another device (the REST API, outside this page) shows here and counts down.
    answer = requests.put(
        f"{live_server.url}/v1/notifications/{live['id']}/read", headers=bearer(token), timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 200, answer.text
    expect(item(page, "live one")).to_have_attribute("data-status", "READ", timeout=WAIT_MS)
    expect(item(page, "live one").locator(".read-at")).to_have_attribute(
        "datetime", answer.json()["readAt"], timeout=WAIT_MS
    )
    expect_unread(page, 2)

    # "Mark all read": nothing unread is left, here and on the server, also after a reload.
    read_items = page.locator('#notifications > li.notification[data-status="READ"]')
    page.click("#mark-all-read", timeout=WAIT_MS)
    expect_unread(page, 0)
    expect(read_items).to_have_count(3, timeout=WAIT_MS)
    assert server_unread(live_server, "judy") == 0
    page.reload(timeout=WAIT_MS)
    expect(page.locator("#token")).to_have_value(token, timeout=WAIT_MS)
    page.click("#connect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
    expect(read_items).to_have_count(3, timeout=WAIT_MS)
    expect_unread(page, 0)
    live_server.send(["judy"], "after the reload")
    expect(item(page, "after the reload")).to_have_count(1, timeout=WAIT_MS)
    expect_unread(page, 1)


def test_data_url_becomes_a_link_only_when_it_is_http(page, live_server):
    open_client(page, live_server)
    connect(page, live_server.token("kim"))

    url = "https://example.com/deploys/42?tab=log#top"
    send_with_data(live_server, ["kim"], "Deploy finished", {"url": url})
    plain = "http://127.0.0.1:9/status"
    send_with_data(live_server, ["kim"], "Plain http", {"url": plain, "extra": [1, 2]})

    for message, href in (("Deploy finished", url), ("Plain http", plain)):
        link = item(page, message).locator("a")
        expect(link).to_have_count(1, timeout=WAIT_MS)
        expect(link).to_have_attribute("href", href, timeout=WAIT_MS)
        expect(link).to_have_attribute("rel", "noopener noreferrer", timeout=WAIT_MS)
        expect(link).to_have_attribute("target", "_blank", timeout=WAIT_MS)
        expect(link).to_have_text(href, timeout=WAIT_MS)

    # Anything but an absolute http(s) URL makes no link; the message stays text.
    payload = '<b>bold</b><img src=x onerror="window.__xss=1">'
    refused = {  # no name is part of another: item() matches a part of the text
        "javascript": {"url": "javascript:window.__xss=2"},
        "mixed case and blanks": {"url": "  JaVaScRiPt:window.__xss=3"},
        "data scheme": {"url": "data:text/html,<script>window.__xss=4</script>"},
        "relative": {"url": "/client/"},
        "ftp": {"url": "ftp://example.com/file"},
        "not a string": {"url": ["https://example.com/"]},
        "no url": {"href": "https://example.com/"},
        "null": None,
    }
    for name, data in refused.items():
        send_with_data(live_server, ["kim"], f"{payload} {name}", data)

    for name in refused:
        entry = item(page, f"{payload} {name}")
        expect(entry).to_have_count(1, timeout=WAIT_MS)
        expect(entry.locator(".message")).to_have_text(f"{payload} {name}", timeout=WAIT_MS)
        expect(entry.locator("a")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#notifications a")).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator("#notifications img, #notifications b")).to_have_count(0, timeout=WAIT_MS)
    page.wait_for_timeout(500)  # give a (wrongly) created image time to fail and fire onerror
    assert page.evaluate("typeof window.__xss") == "undefined"

    # The history (a reload) renders the same links.
    page.reload(timeout=WAIT_MS)
    page.click("#connect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
    everything = 2 + len(refused)
    expect(page.locator("#notifications > li.notification")).to_have_count(everything, timeout=WAIT_MS)
    expect(page.locator("#notifications a")).to_have_count(2, timeout=WAIT_MS)
    expect(item(page, "Deploy finished").locator("a")).to_have_attribute("href", url, timeout=WAIT_MS)


# ---- categories, preferences and topics (contract v3) ------------------------------------------


def user_call(live_server, method, path, user_id, body=None):
    """`method path` on the API as `user_id` (with `body` as JSON); the response, whatever its status."""
    return requests.request(
        method,
        live_server.url + path,
        json=body,
        headers=bearer(live_server.token(user_id)),
        timeout=HTTP_TIMEOUT,
    )


def server_muted(live_server, user_id):
    """The user's muted categories as GET /v1/preferences answers them."""
    response = user_call(live_server, "GET", "/v1/preferences", user_id)
    assert response.status_code == 200, response.text
    return response.json()["muted"]


def server_topics(live_server, user_id):
    """The user's topics as GET /v1/topics answers them."""
    response = user_call(live_server, "GET", "/v1/topics", user_id)
    assert response.status_code == 200, response.text
    return response.json()["topics"]


def subscribe(live_server, topic, user_ids):
    """Put users in a topic through the admin route."""
    response = requests.put(
        f"{live_server.url}/v1/admin/topics/{topic}/subscribers",
        json={"userIds": user_ids},
        headers=bearer(live_server.token("admin", admin=True)),
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text


def subscribers(live_server, topic):
    response = requests.get(
        f"{live_server.url}/v1/admin/topics/{topic}/subscribers",
        headers=bearer(live_server.token("admin", admin=True)),
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()["userIds"]


def admin_create(live_server, body):
    """POST /v1/admin/notifications as an admin with `body`; the response, whatever its status."""
    return requests.post(
        live_server.url + ADMIN_ROUTE,
        json=body,
        headers=bearer(live_server.token("admin", admin=True)),
        timeout=HTTP_TIMEOUT,
    )


def category_row(page, name):
    return page.locator(f'#categories > li[data-category="{name}"]')


def expect_categories(page, muted_by_name):
    """The Preferences panel lists exactly these categories, in name order, each muted or not."""
    names = sorted(muted_by_name)
    expect(page.locator("#categories > li .category-name")).to_have_text(names, timeout=WAIT_MS)
    for name in names:
        muted = muted_by_name[name]
        row = category_row(page, name)
        expect(row).to_have_attribute("data-muted", str(muted).lower(), timeout=WAIT_MS)
        toggle = row.get_by_role("button", name=f"{'Unmute' if muted else 'Mute'} {name}", exact=True)
        expect(toggle).to_have_text("Unmute" if muted else "Mute", timeout=WAIT_MS)
        expect(toggle).to_be_enabled(timeout=WAIT_MS)
        expect(toggle).not_to_have_attribute("aria-disabled", "true", timeout=WAIT_MS)
    expect(page.locator("#categories-empty")).to_be_hidden(timeout=WAIT_MS)


def expect_tags(entry, category, topic):
    """A list item shows `category` and `topic` (None: no topic shown)."""
    expect(entry).to_have_attribute("data-category", category, timeout=WAIT_MS)
    expect(entry.locator(".category .tag-name")).to_have_text(category, timeout=WAIT_MS)
    if topic is None:
        expect(entry.locator(".topic")).to_have_count(0, timeout=WAIT_MS)
    else:
        expect(entry).to_have_attribute("data-topic", topic, timeout=WAIT_MS)
        expect(entry.locator(".topic .tag-name")).to_have_text(topic, timeout=WAIT_MS)


def topic_names(page):
    return page.locator("#topics > li .topic-name")


def test_muting_in_one_tab_shows_in_the_other(page, second_tab, live_server):
    answer = user_call(live_server, "PUT", "/v1/preferences", "lena", {"muted": ["marketing"]})
    assert answer.status_code == 200, answer.text
    second_sockets = SocketWatch(second_tab)
    tabs = (page, second_tab)
    token = live_server.token("lena")
    for tab in tabs:
        open_client(tab, live_server)
        connect(tab, token)
        # Loaded on connect: a muted category is listed before any notification shows it.
        expect_categories(tab, {"marketing": True})
        expect(tab.locator("#preferences-status")).to_have_text("Muted: marketing.", timeout=WAIT_MS)
        tab.evaluate("window.__marker = 'same page'")

    # A notification without a category is in `general`, which the panel then lists.
    live_server.send(["lena"], "no category given")
    for tab in tabs:
        expect_tags(item(tab, "no category given"), "general", None)
        expect_categories(tab, {"general": False, "marketing": True})

    category_row(page, "general").get_by_role("button", name="Mute general").click(timeout=WAIT_MS)
    for tab in tabs:
        expect_categories(tab, {"general": True, "marketing": True})
    # The toggle is the same button, focus kept, now offering the way back.
    expect(page.get_by_role("button", name="Unmute general", exact=True)).to_be_focused(timeout=WAIT_MS)
    for tab in tabs:
        expect(tab.locator("#preferences-status")).to_have_text("Muted: general, marketing.", timeout=WAIT_MS)
    assert server_muted(live_server, "lena") == ["general", "marketing"]
    assert second_sockets.events_received("preferences_updated"), "tab 2 heard of the change by no event"

    # Unmuted in tab 2, shown in tab 1; an unmuted category stays listed, to be muted again.
    unmute = category_row(second_tab, "marketing").get_by_role("button", name="Unmute marketing")
    unmute.click(timeout=WAIT_MS)
    for tab in tabs:
        expect_categories(tab, {"general": True, "marketing": False})
        expect(tab.locator("#preferences-status")).to_have_text("Muted: general.", timeout=WAIT_MS)
    assert server_muted(live_server, "lena") == ["general"]

    category_row(page, "general").get_by_role("button", name="Unmute general").click(timeout=WAIT_MS)
    for tab in tabs:
        expect_categories(tab, {"general": False, "marketing": False})
        expect(tab.locator("#preferences-status")).to_have_text("Nothing muted.", timeout=WAIT_MS)
        expect(tab.locator("#error")).to_be_hidden(timeout=WAIT_MS)
        assert tab.evaluate("window.__marker") == "same page"
    assert server_muted(live_server, "lena") == []


def test_refused_mute_shows_the_servers_error(page, live_server):
    full = [f"full-{n:03d}" for n in range(100)]  # the most a user may mute
    answer = user_call(live_server, "PUT", "/v1/preferences", "nina", {"muted": full})
    assert answer.status_code == 200, answer.text
    refusal = user_call(live_server, "PUT", "/v1/preferences", "nina", {"muted": [*full, "general"]})
    assert refusal.status_code == 400, refusal.text

    open_client(page, live_server)
    connect(page, live_server.token("nina"))
    live_server.send(["nina"], "one category too many")
    expect(category_row(page, "general")).to_have_attribute("data-muted", "false", timeout=WAIT_MS)
    expect(page.locator('#categories > li[data-muted="true"]')).to_have_count(100, timeout=WAIT_MS)

    category_row(page, "general").get_by_role("button", name="Mute general").click(timeout=WAIT_MS)
    error = page.locator("#error")
    expect(error).to_be_visible(timeout=WAIT_MS)
    expect(error).to_contain_text(refusal.json()["message"], timeout=WAIT_MS)
    # The panel still shows the server's list, and the toggle can be tried again.
    expect(category_row(page, "general")).to_have_attribute("data-muted", "false", timeout=WAIT_MS)
    again = category_row(page, "general").get_by_role("button", name="Mute general")
    expect(again).to_be_enabled(timeout=WAIT_MS)
    expect(again).not_to_have_attribute("aria-disabled", "true", timeout=WAIT_MS)
    assert server_muted(live_server, "nina") == full


def test_topics_panel_lists_and_leaves_topics(page, live_server):
    subscribe(live_server, "deploys", ["omar", "someone-else"])
    subscribe(live_server, "releases", ["omar"])
    subscribe(live_server, "other", ["someone-else"])

    open_client(page, live_server)
    expect(page.locator("#topics-empty")).to_have_text("Connect to see your topics.", timeout=WAIT_MS)
    connect(page, live_server.token("omar"))
    expect(topic_names(page)).to_have_text(["deploys", "releases"], timeout=WAIT_MS)
    expect(page.locator("#topics-empty")).to_be_hidden(timeout=WAIT_MS)

    page.get_by_role("button", name="Leave deploys", exact=True).click(timeout=WAIT_MS)
    expect(topic_names(page)).to_have_text(["releases"], timeout=WAIT_MS)
    expect(page.locator("#topics-status")).to_have_text("Left deploys.", timeout=WAIT_MS)
    # The focus does not fall off the page with the row that was removed.
    expect(page.get_by_role("button", name="Leave releases", exact=True)).to_be_focused(timeout=WAIT_MS)
    assert server_topics(live_server, "omar") == ["releases"]
    assert subscribers(live_server, "deploys") == ["someone-else"]
    expect(page.locator("#error")).to_be_hidden(timeout=WAIT_MS)

    # A reload asks the server again.
    page.reload(timeout=WAIT_MS)
    page.click("#connect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
    expect(topic_names(page)).to_have_text(["releases"], timeout=WAIT_MS)

    page.get_by_role("button", name="Leave releases", exact=True).click(timeout=WAIT_MS)
    expect(topic_names(page)).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#topics-empty")).to_have_text("You are in no topics.", timeout=WAIT_MS)
    expect(page.locator("#topics-empty")).to_be_visible(timeout=WAIT_MS)
    assert server_topics(live_server, "omar") == []
    assert subscribers(live_server, "other") == ["someone-else"]


def test_category_and_topic_of_the_history_are_shown_as_text(page, live_server):
    """The page's rendering of the v3 fields, whatever the server in front of it sends yet:
    the history answer gets them added on its way to the page."""
    payload = '<img src=x onerror="window.__xss=1">'
    added = {
        "with both": {"category": "deploys", "topic": "releases"},
        "direct": {"category": payload, "topic": None},
        "old shape": {},  # no category, no topic: `general`, no topic
    }

    def add_fields(route):
        response = route.fetch()
        body = response.json()
        for notification in body:
            notification.pop("category", None)
            notification.pop("topic", None)
            notification.update(added[notification["message"]])
        route.fulfill(response=response, json=body)

    page.route(re.compile(r".*/v1/notifications$"), add_fields)
    for message in added:
        live_server.send(["paul"], message)
    open_client(page, live_server)
    connect(page, live_server.token("paul"))

    expect(page.locator("#notifications > li.notification")).to_have_count(3, timeout=WAIT_MS)
    expect_tags(item(page, "with both"), "deploys", "releases")
    expect_tags(item(page, "direct"), payload, None)
    expect_tags(item(page, "old shape"), "general", None)
    expect(item(page, "with both").locator(".category")).to_have_text("category deploys", timeout=WAIT_MS)
    expect(item(page, "with both").locator(".topic")).to_have_text("topic releases", timeout=WAIT_MS)
    expect(page.locator("#categories > li .category-name")).to_have_text(
        sorted(["deploys", payload, "general"]), timeout=WAIT_MS
    )
    expect(page.locator("img")).to_have_count(0, timeout=WAIT_MS)
    page.wait_for_timeout(500)  # give a (wrongly) created image time to fail and fire onerror
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_notification_shows_its_category_and_topic(page, live_server):
    subscribe(live_server, "releases", ["quinn"])
    open_client(page, live_server)
    connect(page, live_server.token("quinn"))

    direct = admin_create(
        live_server, {"userIds": ["quinn"], "message": "Deploy done", "category": "deploys"}
    )
    assert direct.status_code == 201, direct.text
    expect_tags(item(page, "Deploy done"), "deploys", None)
    to_topic = admin_create(live_server, {"topic": "releases", "message": "Release 2.1 is out"})
    assert to_topic.status_code == 201, to_topic.text
    assert to_topic.json()["delivered"] == 1, to_topic.text
    expect_tags(item(page, "Release 2.1 is out"), "general", "releases")
    expect_categories(page, {"deploys": False, "general": False})

    # The history renders the same.
    page.reload(timeout=WAIT_MS)
    page.click("#connect", timeout=WAIT_MS)
    expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
    expect_tags(item(page, "Deploy done"), "deploys", None)
    expect_tags(item(page, "Release 2.1 is out"), "general", "releases")
    expect_categories(page, {"deploys": False, "general": False})
