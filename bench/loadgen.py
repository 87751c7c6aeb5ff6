"""One load process: asyncio Socket.IO clients and REST posters, driven over a pipe.

The main bench process (see `bench/pool.py`) sends one command at a time as
`{"seq": n, "op": name, "args": {...}}` and gets `{"seq": n, "result": ...}` (or
`{"seq": n, "error": text}`) back. Every command bounds its own waiting, so a slow or
dead server makes a command return partial results instead of hanging.

Clients connect over the websocket transport only, with the `Authorization: Bearer`
header, never reconnect by themselves (a drop is counted, not hidden), and record every
notification they get as `(user id, notification id, receive time, kind)`, where kind
is `n` for `new_notification` and `p` for an item of `pending_notifications`. Their
handlers return normally, which acknowledges the event when the server asks for it: with
BENCH_ACK=1 in the environment (`python -m bench --ack`) they connect as acknowledging
clients (`auth={"ack": true}`), otherwise as plain ones.
"""

import asyncio
import logging
import os
import random
import resource
import signal
import threading
import time
from collections import Counter

import aiohttp
import socketio

from bench.tokens import make_token
from tests.support.wire import ADMIN_ROUTE

ACKNOWLEDGING = os.environ.get("BENCH_ACK") == "1"
# Concurrent disconnects while tearing clients down.
CLOSE_CONCURRENCY = 500
CLOSE_TIMEOUT = 5.0


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def describe(exc: BaseException) -> str:
    """A short, groupable text for an exception."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text[:160]}" if text else name


class Client:
    """One Socket.IO connection of one user."""

    __slots__ = ("user_id", "sio", "proc", "closing", "connect_error")

    def __init__(self, proc: "LoadProcess", user_id: str) -> None:
        self.user_id = user_id
        self.proc = proc
        self.closing = False
        self.connect_error: str | None = None
        self.sio = socketio.AsyncClient(
            reconnection=False,
            handle_sigint=False,
            http_session=proc.ws_session,
            request_timeout=CLOSE_TIMEOUT,
        )
        self.sio.on("new_notification", self._on_new)
        self.sio.on("pending_notifications", self._on_pending)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect_error", self._on_connect_error)

    def _on_new(self, data) -> None:
        self.proc.receipts.append((self.user_id, data.get("id"), time.time(), "n"))

    def _on_pending(self, data) -> None:
        now = time.time()
        self.proc.receipts.extend((self.user_id, item.get("id"), now, "p") for item in data)
        self.proc.pending_batches += 1

    def _on_disconnect(self, reason=None) -> None:
        if not self.closing:
            self.proc.drops.append((self.user_id, time.time(), str(reason)))

    def _on_connect_error(self, data=None) -> None:
        message = data.get("message") if isinstance(data, dict) else data
        self.connect_error = str(message)[:160] if message is not None else "connect_error"

    async def connect(self, url: str, token: str, timeout: float) -> None:
        """Connect and join the default namespace within `timeout` seconds, or raise."""
        await asyncio.wait_for(
            self.sio.connect(
                url,
                headers={"Authorization": f"Bearer {token}"},
                auth={"ack": True} if ACKNOWLEDGING else None,
                transports=["websocket"],
                wait_timeout=timeout,
            ),
            timeout,
        )

    async def close(self) -> None:
        """Disconnect (quietly, bounded in time); a hung close is aborted."""
        self.closing = True
        try:
            await asyncio.wait_for(self.sio.disconnect(), CLOSE_TIMEOUT)
        except Exception:  # noqa: BLE001  (teardown: nothing left to report)
            try:
                await asyncio.wait_for(self.sio.eio.disconnect(abort=True), CLOSE_TIMEOUT)
            except Exception:  # noqa: BLE001,S110
                pass


class LoadProcess:
    """The state of one load process and the commands the main process can send it."""

    def __init__(self, conn, name: str) -> None:
        self.conn = conn
        self.name = name
        self.clients: dict[str, Client] = {}
        self.receipts: list[tuple[str, str, float, str]] = []
        self.drops: list[tuple[str, float, str]] = []
        self.pending_batches = 0
        self.ws_session: aiohttp.ClientSession | None = None
        self.http: aiohttp.ClientSession | None = None
        self.fd_limit = 0

    async def serve(self) -> None:
        """Run commands from the pipe until `stop` or until the main process goes away."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()

        def read_pipe() -> None:
            while True:
                try:
                    message = self.conn.recv()
                except (EOFError, OSError):
                    message = None
                loop.call_soon_threadsafe(inbox.put_nowait, message)
                if message is None or message.get("op") == "stop":
                    return

        threading.Thread(target=read_pipe, name="pipe-reader", daemon=True).start()
        self.ws_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
        )
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512), cookie_jar=aiohttp.DummyCookieJar()
        )
        try:
            while True:
                message = await inbox.get()
                if message is None or message.get("op") == "stop":
                    break
                reply: dict = {"seq": message["seq"]}
                try:
                    handler = getattr(self, "op_" + message["op"])
                    reply["result"] = await handler(**message.get("args", {}))
                except Exception as exc:  # noqa: BLE001  (reported to the main process)
                    reply["error"] = describe(exc)
                try:
                    await loop.run_in_executor(None, self.conn.send, reply)
                except (OSError, EOFError):
                    break
        finally:
            await self._close_all()
            await self.ws_session.close()
            await self.http.close()

    # -- clients ---------------------------------------------------------------------

    async def op_hello(self) -> dict:
        """Liveness check; also reports the open-file limit of this process."""
        return {"name": self.name, "fd_limit": self.fd_limit}

    async def op_connect(
        self, users: list, secret: str, concurrency: int, timeout: float, deadline: float
    ) -> dict:
        """Connect `users` ([user id, url] pairs), at most `concurrency` at a time.

        Each connection gets `timeout` seconds; the whole batch `deadline` seconds,
        after which the ones not connected yet are abandoned and count as failed.
        """
        semaphore = asyncio.Semaphore(max(1, concurrency))
        outcome: dict[str, str] = {}
        times: list[float] = []
        bounds = {"start": None, "end": None}

        async def one(user_id: str, url: str) -> None:
            async with semaphore:
                client = Client(self, user_id)
                self.clients[user_id] = client
                token = make_token(secret, user_id)
                started = time.time()
                if bounds["start"] is None or started < bounds["start"]:
                    bounds["start"] = started
                try:
                    await client.connect(url, token, timeout)
                except Exception as exc:  # noqa: BLE001  (counted as a failure)
                    reason = describe(exc)
                    if client.connect_error:
                        reason = f"connect_error: {client.connect_error}"
                    outcome[user_id] = reason
                    self.clients.pop(user_id, None)
                    await client.close()
                    return
                finished = time.time()
                bounds["end"] = max(bounds["end"] or finished, finished)
                times.append(finished - started)
                outcome[user_id] = "ok"

        tasks = [asyncio.ensure_future(one(user_id, url)) for user_id, url in users]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=deadline)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=CLOSE_TIMEOUT)
        failed = {user_id: reason for user_id, reason in outcome.items() if reason != "ok"}
        for user_id, _url in users:
            if user_id not in outcome:
                failed[user_id] = "deadline"
                client = self.clients.pop(user_id, None)
                if client is not None:
                    await client.close()
        return {
            "ok": len(times),
            "failed": failed,
            "times": times,
            "start": bounds["start"],
            "end": bounds["end"],
        }

    async def op_status(self) -> dict:
        """Clients held, connected right now, dropped (not by us) so far, receipts so far."""
        return {
            "clients": len(self.clients),
            "connected": sum(1 for c in self.clients.values() if c.sio.connected),
            "drops": [list(d) for d in self.drops],
            "receipts": len(self.receipts),
        }

    async def op_count(self) -> int:
        """How many notifications the clients of this process have received so far."""
        return len(self.receipts)

    async def op_receipts(self) -> dict:
        """Every receipt so far, and how many `pending_notifications` events carried them."""
        return {"receipts": self.receipts, "pending_batches": self.pending_batches}

    async def op_reset(self, timeout: float = 60.0) -> dict:
        """Disconnect every client and forget receipts and drops."""
        closed = await asyncio.wait_for(self._close_all(), timeout)
        self.receipts = []
        self.drops = []
        self.pending_batches = 0
        return {"closed": closed}

    async def _close_all(self) -> int:
        clients = list(self.clients.values())
        self.clients = {}
        for client in clients:
            client.closing = True
        semaphore = asyncio.Semaphore(CLOSE_CONCURRENCY)

        async def close(client: Client) -> None:
            async with semaphore:
                await client.close()

        if clients:
            await asyncio.gather(*(close(c) for c in clients), return_exceptions=True)
        return len(clients)

    # -- posting -----------------------------------------------------------------------

    async def _post(self, url: str, token: str, user_ids: list, message: str, timeout: float) -> dict:
        """One admin POST; times, HTTP status, and what the server said it created."""
        body = {"userIds": user_ids, "message": message}
        headers = {"Authorization": f"Bearer {token}"}
        sent = time.time()
        out: dict = {"sent": sent, "done": None, "status": None}
        try:
            async with self.http.post(
                url + ADMIN_ROUTE, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                out["status"] = response.status
                if response.status == 201:
                    payload = await response.json(content_type=None)
                else:
                    out["error"] = f"HTTP {response.status}: {(await response.text())[:160]}"
        except Exception as exc:  # noqa: BLE001  (reported per POST)
            out["error"] = describe(exc)
            out["done"] = time.time()
            return out
        out["done"] = time.time()
        if out["status"] == 201:
            items = payload.get("notifications", [])
            out["ids"] = {item["id"]: item["userId"] for item in items}
            out["statuses"] = dict(Counter(item.get("status") for item in items))
        return out

    async def op_post(self, url: str, token: str, user_ids: list, message: str, timeout: float) -> dict:
        """One admin POST (see `_post`)."""
        return await self._post(url, token, user_ids, message, timeout)

    async def op_post_many(
        self, jobs: list, token: str, concurrency: int, timeout: float, deadline: float
    ) -> list:
        """POST each job ([url, user ids, message]) with at most `concurrency` in flight.

        Jobs not finished within `deadline` seconds come back as `None`.
        """
        semaphore = asyncio.Semaphore(max(1, concurrency))
        results: list = [None] * len(jobs)

        async def one(index: int, url: str, user_ids: list, message: str) -> None:
            async with semaphore:
                results[index] = await self._post(url, token, user_ids, message, timeout)

        tasks = [asyncio.ensure_future(one(i, *job)) for i, job in enumerate(jobs)]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=deadline)
            for task in late:
                task.cancel()
        return results

    async def op_open_loop(
        self,
        urls: list,
        token: str,
        users: list,
        rate: float,
        duration: float,
        seed: int,
        timeout: float,
    ) -> dict:
        """POST one notification to a random user every 1/rate s for `duration` s.

        Open loop: each POST starts at its scheduled time whether or not earlier ones
        have been answered; POSTs alternate over `urls`. Returns, per POST, its
        scheduled and actual send time, answer time, status, notification id and user.
        """
        rng = random.Random(seed)
        count = max(1, round(rate * duration))
        start = time.time() + 0.1
        results: list = [None] * count

        async def one(index: int, url: str, user_id: str, scheduled: float) -> None:
            out = await self._post(url, token, [user_id], f"bench s6 #{index}", timeout)
            out["scheduled"] = scheduled
            out["user"] = user_id
            out["server"] = urls.index(url)
            results[index] = out

        tasks = []
        for index in range(count):
            scheduled = start + index / rate
            delay = scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            user_id = rng.choice(users)
            tasks.append(asyncio.ensure_future(one(index, urls[index % len(urls)], user_id, scheduled)))
        _, late = await asyncio.wait(tasks, timeout=timeout + 5)
        for task in late:
            task.cancel()
        return {"start": start, "posts": results}


def worker_main(conn, name: str) -> None:
    """Entry point of a load process (multiprocessing target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops us
    # The client libraries log connection trouble themselves (and add their own handler
    # when their logger has no level); the bench counts it instead.
    for logger in ("socketio", "socketio.client", "engineio", "engineio.client", "aiohttp", "asyncio"):
        logging.getLogger(logger).setLevel(logging.CRITICAL + 1)
    proc = LoadProcess(conn, name)
    proc.fd_limit = raise_fd_limit()
    asyncio.run(proc.serve())
