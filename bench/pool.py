"""The load processes as seen from the main process: start, command, measure, stop.

One process posts (the admin's REST calls); the others hold the Socket.IO clients.
Commands go over a pipe each; a reply that comes after its command timed out is
recognised by its sequence number and dropped, so a late answer is never taken for
the answer to a later command.
"""

import multiprocessing
import os
import time
from dataclasses import dataclass

import psutil

from bench.loadgen import worker_main

STOP_TIMEOUT = 10.0


class LoadError(RuntimeError):
    """A load process failed a command, did not answer in time, or died."""


@dataclass
class Worker:
    """One load process and the parent's end of its pipe."""

    name: str
    process: multiprocessing.process.BaseProcess
    conn: object
    seq: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid


class LoadPool:
    """A poster process and `clients` client processes (multiprocessing, spawn)."""

    def __init__(self, clients: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.poster: Worker | None = None
        self.clients: list[Worker] = []
        names = ["poster"] + [f"clients-{i}" for i in range(clients)]
        try:
            for name in names:
                parent, child = context.Pipe()
                process = context.Process(target=worker_main, args=(child, name), name=f"bench-{name}")
                process.daemon = True
                process.start()
                child.close()
                worker = Worker(name, process, parent)
                if name == "poster":
                    self.poster = worker
                else:
                    self.clients.append(worker)
            hello = self.call_all("hello", 60)
            self.fd_limits = {w.name: r["fd_limit"] for w, r in zip(self.all, hello, strict=True)}
        except BaseException:
            self.close()
            raise
        self._processes = {w.pid: psutil.Process(w.pid) for w in self.all}
        self._processes[os.getpid()] = psutil.Process(os.getpid())

    @property
    def all(self) -> list[Worker]:
        """Every load process, the poster first."""
        return ([self.poster] if self.poster else []) + self.clients

    def send(self, worker: Worker, op: str, **args) -> int:
        """Send a command; returns its sequence number (see `receive`)."""
        worker.seq += 1
        try:
            worker.conn.send({"seq": worker.seq, "op": op, "args": args})
        except (OSError, EOFError) as exc:
            raise LoadError(f"{worker.name}: cannot send {op}: {exc}") from exc
        return worker.seq

    def receive(self, worker: Worker, seq: int, op: str, wait: float):
        """The answer to command `seq`, waiting at most `wait` seconds."""
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            left = deadline - time.monotonic()
            try:
                ready = worker.conn.poll(max(0.0, left))
            except (OSError, EOFError) as exc:
                raise LoadError(f"{worker.name} is gone ({exc})") from exc
            if not ready:
                if not worker.process.is_alive():
                    raise LoadError(f"{worker.name} died (exit code {worker.process.exitcode})")
                raise LoadError(f"{worker.name} did not answer {op} within {wait:.0f}s")
            try:
                reply = worker.conn.recv()
            except (OSError, EOFError) as exc:
                raise LoadError(f"{worker.name} is gone ({exc})") from exc
            if reply.get("seq") != seq:
                continue  # the late answer to a command that timed out
            if "error" in reply:
                raise LoadError(f"{worker.name}: {op} failed: {reply['error']}")
            return reply["result"]

    def call(self, worker: Worker, op: str, wait: float, **args):
        """Send one command and wait at most `wait` seconds for its answer."""
        return self.receive(worker, self.send(worker, op, **args), op, wait)

    def call_each(self, calls: list[tuple[Worker, str, dict]], wait: float) -> list:
        """Run commands on several processes at once; answers in the order of `calls`."""
        started = time.monotonic()
        pending = [(worker, op, self.send(worker, op, **args)) for worker, op, args in calls]
        results = []
        for worker, op, seq in pending:
            left = wait - (time.monotonic() - started)
            results.append(self.receive(worker, seq, op, left))
        return results

    def call_all(self, op: str, wait: float, workers: list[Worker] | None = None, **args) -> list:
        """The same command on every process of `workers` (default: all)."""
        return self.call_each([(w, op, args) for w in (workers or self.all)], wait)

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds so far of each load process and of this one."""
        out = {}
        names = {w.pid: w.name for w in self.all}
        for pid, process in self._processes.items():
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            out[names.get(pid, "main")] = times.user + times.system
        return out

    def close(self) -> None:
        """Stop every load process: politely, then by force (each by its own pid)."""
        for worker in self.all:
            try:
                worker.conn.send({"seq": 0, "op": "stop"})
            except (OSError, EOFError):
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.all:
            worker.process.join(max(0.1, deadline - time.monotonic()))
        for worker in self.all:
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(3)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(3)
            try:
                worker.conn.close()
            except OSError:
                pass
