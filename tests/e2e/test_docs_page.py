"""The operators' pages in headless Chromium with no network: /docs/ (Swagger UI) and /admin-ui/.

Every request to a host other than the server's is aborted and fails the test, as does
any uncaught JavaScript error or Content-Security-Policy violation: the pages must work
from the server alone, under the headers it sends. Debian's chromium is used, never a
browser downloaded by Playwright; without it the module is skipped (failed with
REQUIRE_SERVICES=1).
"""

from urllib.parse import urlparse

import pytest
import requests

from tests.support.browser import chromium_browser, require_chromium
from tests.support.clients import connect
from tests.support.live_server import HTTP_TIMEOUT

require_chromium()
from playwright.sync_api import expect  # noqa: E402  (after the check that it is installed)

WAIT_MS = 10_000  # every wait on a page is bounded by this
ADMIN_PASSWORD = "an-admin-ui-password-for-tests"


@pytest.fixture(scope="module")
def chromium():
    with chromium_browser() as browser:
        yield browser


@pytest.fixture
def offline_page(chromium, live_server):
    """A fresh page that can reach the server and nothing else; checked afterwards for requests
    elsewhere, JavaScript errors and CSP violations."""
    context = chromium.new_context()
    page = context.new_page()
    elsewhere, problems = [], []
    server_host = urlparse(live_server.url).netloc

    def only_the_server(route):
        url = urlparse(route.request.url)
        if url.scheme in ("data", "blob") or url.netloc == server_host:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" or "Content Security Policy" in message.text
            else None
        ),
    )
    yield page
    context.close()
    assert not elsewhere, f"the page asked for other hosts: {elsewhere}"
    assert not problems, f"the page reported: {problems}"


def test_docs_lists_every_route_of_the_openapi_document(offline_page, live_server):
    offline_page.goto(live_server.url + "/docs", timeout=WAIT_MS)  # redirected to /docs/
    paths = requests.get(live_server.url + "/openapi.json", timeout=HTTP_TIMEOUT).json()["paths"]
    for path, operations in paths.items():
        for method in operations:
            block = offline_page.locator(f".opblock-{method}").filter(
                has=offline_page.locator(f'[data-path="{path}"]')
            )
            expect(block).to_have_count(1, timeout=WAIT_MS)
    expect(offline_page.locator(".info .title")).to_contain_text("Notification service", timeout=WAIT_MS)


@pytest.mark.server_env(ADMIN_UI_PASSWORD=ADMIN_PASSWORD)
def test_admin_ui_logs_in_and_lists_the_sockets(offline_page, live_server, socket_client):
    client = connect(socket_client(user_id="alice"), live_server, "alice")
    sid = client.get_sid()
    page = offline_page
    page.goto(live_server.url + "/admin-ui/", timeout=WAIT_MS)
    page.get_by_label("Server URL").fill(live_server.url, timeout=WAIT_MS)
    page.get_by_label("Username").fill("admin", timeout=WAIT_MS)
    page.get_by_label("Password").fill(ADMIN_PASSWORD, timeout=WAIT_MS)
    page.get_by_role("button", name="Connect").click(timeout=WAIT_MS)
    expect(page.get_by_text("connected", exact=True).first).to_be_visible(timeout=WAIT_MS)
    page.get_by_role("link", name="Sockets").click(timeout=WAIT_MS)
    expect(page.get_by_text(sid)).to_be_visible(timeout=WAIT_MS)


def test_client_page_links_to_the_api_reference(live_server):
    import requests

    page = requests.get(live_server.url + "/client/", timeout=10).text
    assert '<a href="../docs/">API reference</a>' in page
    assert requests.get(live_server.url + "/docs/", timeout=10).status_code == 200
