"""deploy/nginx.conf in front of three server processes: sticky polling, WebSocket upgrade, REST, failover."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from tests.support.clients import CONNECT_TIMEOUT
from tests.support.cluster import DELIVERY_TIMEOUT, HTTP_TIMEOUT, running_cluster, unique, watched
from tests.support.ports import free_port
from tests.support.server import REPO_ROOT, LoggedProcess, answers_healthz
from tests.support.skips import skip_or_fail
from tests.support.waiting import ready_or_fail, wait_for

pytestmark = pytest.mark.cluster

CONFIG = REPO_ROOT / "deploy" / "nginx.conf"
BACKENDS = ("5001", "5002", "5003")
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if binary is None:
        skip_or_fail("nginx is not installed (apt-get install nginx)")
    return binary


def _replace(pattern: str, repl, text: str, count: int = 1) -> str:
    """re.subn that insists on exactly `count` matches, so the test follows the config."""
    new, found = re.subn(pattern, repl, text, flags=re.MULTILINE)
    assert found == count, f"deploy/nginx.conf: expected {count} match(es) of {pattern!r}, found {found}"
    return new


def render_config(source: str, prefix: Path, listen_port: int, backend_ports: list[int]) -> str:
    """The deployed config with this test's ports, and every file nginx writes under `prefix`."""
    ports = dict(zip(BACKENDS, backend_ports, strict=True))
    text = _replace(r"^\s*user\s+[^;]*;\n", "", source)  # workers run as the default user
    text = _replace(r"^pid\s+[^;]*;", f"pid {prefix / 'nginx.pid'};", text)
    text = _replace(r"^error_log\s+\S+", f"error_log {prefix / 'error.log'}", text)
    text = _replace(r"^(\s*)access_log\s+\S+", rf"\g<1>access_log {prefix / 'access.log'}", text)
    text = _replace(r"127\.0\.0\.1:(500[1-3])\b", lambda m: f"127.0.0.1:{ports[m.group(1)]}", text, count=3)
    text = _replace(r"^\s*listen\s+\[::\]:80;\n", "", text)
    text = _replace(r"^(\s*)listen\s+80;", rf"\g<1>listen 127.0.0.1:{listen_port};", text)
    temp_paths = "".join(f"    {name}_temp_path {prefix / name};\n" for name in TEMP_PATHS)
    text = _replace(r"^http \{\n", lambda m: m.group(0) + temp_paths, text)
    return "daemon off;\nmaster_process on;\n" + text


class Nginx(LoggedProcess):
    """nginx running in the foreground from a rendered copy of deploy/nginx.conf."""

    def __init__(self, backend_ports: list[int]):
        # Not under pytest's private temp folder: the worker processes need to enter it.
        self.prefix = Path(tempfile.mkdtemp(prefix="nginx-e2e-"))
        self.prefix.chmod(0o755)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(render_config(CONFIG.read_text(), self.prefix, self.port, backend_ports))
        argv = [nginx_binary(), "-c", str(self.conf), "-p", f"{self.prefix}/"]
        argv += ["-e", str(self.prefix / "error.log")]
        super().__init__(argv, dict(os.environ), self.prefix / "nginx.out", f"nginx :{self.port}")

    def start(self) -> "Nginx":
        check = subprocess.run([*self.argv, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (
            f"nginx -t refused the rendered config:\n{check.stderr}\n{self.conf.read_text()}"
        )
        super().start()
        ready_or_fail(self)
        return self

    def ready(self) -> bool:
        return answers_healthz(self.url)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.log_path, self.prefix / "error.log", self.prefix / "access.log"):
            if path.exists():
                parts.append(f"---- {path.name} ----\n" + "\n".join(path.read_text().splitlines()[-lines:]))
        return "\n".join(parts)

    def cleanup(self) -> None:
        shutil.rmtree(self.prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    nginx_binary()
    with running_cluster(tmp_path_factory, "1", "2", "3") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def nginx(cluster):
    proxy = Nginx([server.port for server in cluster.servers.values()])
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
        proxy.cleanup()


@pytest.fixture
def nodes(request, cluster, nginx):
    with watched(request, cluster, extra=nginx.log_tail):
        yield cluster


def backend_of(cluster, user_id: str):
    """The process that logged the Socket.IO connection of `user_id`."""
    return wait_for(
        lambda: next((s for s in cluster.servers.values() if s.logged_connection_of(user_id)), None),
        10,
        f"a server log line saying {user_id} connected",
    )


def test_socketio_through_nginx_polls_upgrades_and_gets_what_another_process_sends(nodes, nginx):
    alice = unique("alice")
    # Default transports: long-polling first (needs sticky sessions), then the WebSocket upgrade.
    client = nodes.connect(nginx.url, alice, transports=None)

    chosen = backend_of(nodes, alice)
    others = [server for server in nodes.servers.values() if server is not chosen]
    wait_for(lambda: client.transport() == "websocket", CONNECT_TIMEOUT, "the upgrade to WebSocket")
    sent = [nodes.send(server.url, [alice], f"from process {server.name}")[alice] for server in others]

    assert [n["status"] for n in sent] == ["DELIVERED", "DELIVERED"]
    for notification in sent:
        wait_for(
            lambda n=notification: client.got(n["id"]),
            DELIVERY_TIMEOUT,
            f"{notification['message']!r} through nginx",
        )
    assert client.connect_errors == []


def test_rest_api_works_through_nginx(nodes, nginx):
    bob = unique("bob")
    admin = {"Authorization": f"Bearer {nodes.token('ops', admin=True)}"}
    user = {"Authorization": f"Bearer {nodes.token(bob)}"}

    created = requests.post(
        nginx.url + "/v1/admin/notifications",
        json={"userIds": [bob], "message": "via nginx"},
        headers=admin,
        timeout=HTTP_TIMEOUT,
    )
    listed = requests.get(nginx.url + "/v1/notifications", headers=user, timeout=HTTP_TIMEOUT)

    assert created.status_code == 201, created.text
    [notification] = created.json()["notifications"]
    assert listed.status_code == 200, listed.text
    assert [(n["id"], n["status"]) for n in listed.json()] == [(notification["id"], "PENDING")]
    read = requests.put(
        f"{nginx.url}/v1/notifications/{notification['id']}/read", headers=user, timeout=HTTP_TIMEOUT
    )
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "READ"
    assert requests.get(nginx.url + "/openapi.json", timeout=HTTP_TIMEOUT).status_code == 200


def test_browser_origin_is_accepted_through_nginx(nodes, nginx):
    carol = unique("carol")
    client = nodes.connect(nginx.url, carol, transports=None, headers={"Origin": nginx.url})

    sent = nodes.send(nginx.url, [carol], "same origin")[carol]

    assert sent["status"] == "DELIVERED"
    wait_for(lambda: client.got(sent["id"]), DELIVERY_TIMEOUT, "the notification on carol's socket")


def test_nginx_skips_a_stopped_process(nodes, nginx):
    dave = unique("dave")
    nodes.connect(nginx.url, dave, transports=None)
    chosen = backend_of(nodes, dave)

    chosen.stop()
    answers = [requests.get(nginx.url + "/healthz", timeout=HTTP_TIMEOUT).status_code for _ in range(5)]
    created = nodes.post(nginx.url, [dave], "while one process is down")
    erin = unique("erin")
    client = nodes.connect(nginx.url, erin, transports=None)

    assert answers == [200] * 5
    assert created.status_code == 201, created.text
    assert client.connected
    assert backend_of(nodes, erin) is not chosen
