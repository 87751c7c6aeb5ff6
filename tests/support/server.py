"""The one launcher of server processes: start `python wsgi.py` with an environment, wait for it, stop it.

A process is ready when `/readyz` answers 200 (or what a subclass checks instead) and
is stopped with SIGTERM, then SIGKILL after STOP_TIMEOUT seconds. Its output goes to a
log file. Used by the e2e tests (one server, or a cluster) and by the benchmark.
"""

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.ports import HOST, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30  # seconds for a process to be ready (a server to answer /readyz)
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL
CLI_TIMEOUT = 60  # seconds for a `flask` command
LOG_TAIL_LINES = 80
READY_POLL_INTERVAL = 0.05


class ServerStartError(RuntimeError):
    """A process exited while starting, or was not ready within its start timeout."""


def flask_command(env: dict, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """Run `python -m flask --app wsgi ARGS...` from the repository root with `env`; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def answers_healthz(url: str, path: str = "/healthz") -> bool:
    """Whether `url`/healthz (or `path`) answers 200 (within 2 s)."""
    try:
        with urllib.request.urlopen(url + path, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _own_session_dying_with_parent() -> None:
    """In the child, before exec: a session of its own, and SIGTERM when the parent dies (Linux)."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class LoggedProcess:
    """A child process whose output goes to a log file: started, awaited until ready, stopped.

    `own_session`: the child gets a session of its own (a Ctrl-C in the terminal does
    not reach it) and SIGTERM when this process dies.
    """

    def __init__(self, argv: list[str], env: dict, log_path: Path, name: str, own_session: bool = False):
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.name = name
        self.own_session = own_session
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.killed = False
        self._signalled = False
        self._started_at = 0.0
        self._start_offset = 0

    def __repr__(self) -> str:
        return f"<{self.name}>"

    # ---- process control -------------------------------------------------

    def start(self) -> "LoggedProcess":
        """Start the process (again, with the same arguments); `wait_ready()` waits until it serves."""
        assert not self.running, f"{self} is already running"
        self._start_offset = self.log_size()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_own_session_dying_with_parent if self.own_session else None,
            )
        self._started_at = time.monotonic()
        self._signalled = False
        self.returncode = None
        self.killed = False
        return self

    def ready(self) -> bool:
        """Whether the started process serves (subclasses say how to tell)."""
        raise NotImplementedError

    def wait_ready(self, timeout: float = START_TIMEOUT) -> "LoggedProcess":
        """Wait until `ready()`, at most `timeout` seconds from the start; raise ServerStartError otherwise.

        A process that is not ready in time is stopped.
        """
        deadline = self._started_at + timeout
        while True:
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                self.process = None
                raise ServerStartError(
                    f"{self} exited with {self.returncode} while starting:\n{self.log_tail()}"
                )
            if self.ready():
                return self
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(f"{self} was not ready within {timeout} s:\n{self.log_tail()}")
            time.sleep(READY_POLL_INTERVAL)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def poll(self) -> int | None:
        """The exit code once the process has exited, None while it runs."""
        return self.process.poll() if self.process is not None else self.returncode

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the running process (stop() then does not send another SIGTERM)."""
        assert self.process is not None, f"{self} is not running"
        self.process.send_signal(signum)
        self._signalled = self._signalled or signum == signal.SIGTERM

    def kill(self) -> None:
        """SIGKILL: a crash, nothing is cleaned up."""
        self.send_signal(signal.SIGKILL)
        self.returncode = self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        if self.process is None:
            return self.returncode
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.process = None
        return self.returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (unless already sent), SIGKILL after `timeout` s.

        Returns the exit code, or None when it had to be killed (also kept in
        `.returncode` and `.killed`).
        """
        process, self.process = self.process, None
        if process is None:
            return self.returncode
        if process.poll() is None and not self._signalled:
            process.send_signal(signal.SIGTERM)
        try:
            self.returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
            self.returncode = None
            self.killed = True
        return self.returncode

    # ---- log ---------------------------------------------------------------

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int = 0) -> str:
        """What the process wrote from byte `offset` of its log on."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_since(0)

    def log_since_start(self) -> str:
        """What the process wrote since it was last started."""
        return self.log_since(self._start_offset)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


class ServerProcess(LoggedProcess):
    """A server process (`python wsgi.py` unless `command` says otherwise) on a port of 127.0.0.1."""

    def __init__(
        self,
        env: dict,
        log_path: Path,
        *,
        port: int | None = None,
        name: str = "server",
        command: tuple[str, ...] = ("wsgi.py",),
        own_session: bool = False,
    ):
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        super().__init__(
            [sys.executable, *command],
            {**env, "HOST": HOST, "PORT": str(self.port)},
            log_path,
            name,
            own_session=own_session,
        )

    def __repr__(self) -> str:
        return f"<{self.name} :{self.port}>"

    def ready(self) -> bool:
        """Whether `/readyz` answers 200: the database answers and, with a message queue, Redis
        answers and the subscription is up (`/healthz` would only say that the process answers)."""
        return answers_healthz(self.url, "/readyz")


def stop_all(processes) -> None:
    """Stop several processes at once: SIGTERM to each, then wait for each (SIGKILL after STOP_TIMEOUT)."""
    processes = list(processes)
    for process in processes:
        if process.running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    for process in processes:
        process.stop()
