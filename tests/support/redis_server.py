"""A private `redis-server` on a free port of 127.0.0.1, without persistence, that tests stop and restart."""

import os
import shutil
import subprocess
from pathlib import Path

import redis

from tests.support.ports import free_port
from tests.support.server import STOP_TIMEOUT, LoggedProcess
from tests.support.skips import skip_or_fail
from tests.support.waiting import ready_or_fail


def redis_server_binary() -> str:
    """Where `redis-server` is; skips (or fails) the test when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("redis-server is not installed (it is not on PATH)")
    return binary


class RedisServer(LoggedProcess):
    """`redis-server --save "" --appendonly no` on a port of its own, writing into `workdir`."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--save", "", "--appendonly", "no", "--port", str(self.port)]
        argv += ["--bind", "127.0.0.1", "--dir", str(workdir)]
        super().__init__(argv, dict(os.environ), workdir / f"redis-{self.port}.log", "redis-server")

    def __repr__(self) -> str:
        return f"<redis-server :{self.port}>"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def ready(self) -> bool:
        """Whether it answers PING."""
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> "RedisServer":
        """Start it (again, on the same port) and wait until it answers PING."""
        self.argv[0] = redis_server_binary()
        super().start()
        ready_or_fail(self)
        return self

    def shutdown(self) -> None:
        """`redis-cli -p P shutdown nosave` (an operator's clean stop), then wait until it is gone."""
        cli = shutil.which("redis-cli")
        if cli:
            subprocess.run(
                [cli, "-p", str(self.port), "shutdown", "nosave"],
                capture_output=True,
                timeout=STOP_TIMEOUT,
                check=False,
            )
        else:
            try:
                self.client().shutdown(nosave=True)
            except redis.RedisError:
                pass  # the connection drops as it stops
        if self.process is not None and self.wait_exit(STOP_TIMEOUT) is None:
            self.kill()
