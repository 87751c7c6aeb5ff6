"""Fixtures that run the real server (`python wsgi.py`) and real Socket.IO clients against it."""

import pytest

from tests.support.clients import RecordingClient
from tests.support.cluster import running_cluster, save_figures, watched
from tests.support.live_server import running_live_server
from tests.support.server import LOG_TAIL_LINES, STOP_TIMEOUT

_reports = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def _failed(request) -> bool:
    reports = request.node.stash.get(_reports, {})
    return any(report.failed for report in reports.values())


def server_env(request) -> dict[str, str]:
    """Extra environment variables for the test's server, from `@pytest.mark.server_env(NAME=value)`.

    Values are turned into strings; "" sets a variable to the empty string. Without
    the marker the server gets none.
    """
    marker = request.node.get_closest_marker("server_env")
    if marker is None:
        return {}
    if marker.args:
        raise TypeError("server_env takes keyword arguments only: @pytest.mark.server_env(NAME=value)")
    return {name: str(value) for name, value in marker.kwargs.items()}


@pytest.fixture
def live_server(request):
    """A freshly migrated database and a running server on a free port of 127.0.0.1.

    A test marked `@pytest.mark.server_env(NAME=value, ...)` gets a server with those
    environment variables set as well (see `server_env`).
    """
    with running_live_server(server_env(request)) as server:
        try:
            yield server
        finally:
            server.stop()
            if _failed(request):
                print(f"---- server log ({server.log_path}), last {LOG_TAIL_LINES} lines ----")
                print(server.log_tail())
                if server.killed:
                    print(f"---- the server did not exit within {STOP_TIMEOUT} s of SIGTERM ----")


@pytest.fixture
def socket_client(live_server):
    """Make `RecordingClient`s (tests/support/clients.py); all are disconnected afterwards.

    On teardown the server is stopped first, while its sockets are idle, so that it
    closes them itself; then every client is disconnected.
    """
    clients: list[RecordingClient] = []

    def make(**kwargs) -> RecordingClient:
        client = RecordingClient(**kwargs)
        clients.append(client)
        return client

    yield make
    live_server.stop()
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def record_figures(tmp_path_factory):
    """Keep figures measured by the multi-process tests in cluster-figures.json of this run's
    temporary folder, and log them: `record_figures(group, {name: value})`."""
    folder = tmp_path_factory.getbasetemp()

    def record(group: str, figures: dict) -> None:
        save_figures(folder, group, figures)

    return record


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two server processes, A and B, sharing PostgreSQL and Redis, for a module's cluster tests;
    a module that needs another shape defines its own `cluster`."""
    with running_cluster(tmp_path_factory, "A", "B") as cluster:
        yield cluster


@pytest.fixture
def nodes(request, cluster):
    """The module's `cluster` with every process and Redis running again (an earlier test may
    have stopped one); its logs on failure, and this test's sockets closed afterwards."""
    with watched(request, cluster):
        yield cluster
