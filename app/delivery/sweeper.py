"""The sweeper: what was sent and never confirmed goes back to PENDING and out again; and the heartbeat
of presence, whose resync and reaping end in the same re-send."""

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta

from app.delivery.confirmations import Confirmations
from app.delivery.ports import Presence, Store
from app.records import utcnow

# The name operators' log filters select delivery lines by.
log = logging.getLogger("app.services.delivery")

# Log line that operators and tests read (tests/support/logs.py).
PROCESS_REAPED_LOG = "process %s stopped without closing its sockets: %d user(s) no longer counted online"


class Sweeper:
    """Run by every process (app/realtime/server.py): `sweep` every DELIVERY_CONFIRM_TIMEOUT / 3 s,
    `tick` every PRESENCE_TTL / 3 s with several processes. `send_pending(users)` sends what is
    PENDING to users online (`Delivery.send_pending`)."""

    def __init__(
        self,
        store: Store,
        presence: Presence,
        confirmations: Confirmations,
        config: Mapping,
        send_pending: Callable[[set[str]], int],
    ) -> None:
        self.store = store
        self.presence = presence
        self.confirmations = confirmations
        self.config = config
        self._send_pending = send_pending

    def sweep(self) -> int:
        """Put back to PENDING what was sent and not confirmed in time, and send it again; how many sent.

        One mechanism for every way a send can be lost (a socket closed mid-send, a process
        killed, a message-queue publish that never arrived): a notification sent
        DELIVERY_CONFIRM_TIMEOUT seconds ago that no acknowledging socket acknowledged, and
        that no plain socket was sent, goes back to PENDING; users online get it at once (by
        whichever process claims it), others on connect. Safe in every process at once.
        """
        timeout = self.config["DELIVERY_CONFIRM_TIMEOUT"]
        self.confirmations.flush()
        users = self.store.requeue_unconfirmed(sent_before=utcnow() - timedelta(seconds=timeout))
        if not users:
            return 0
        log.warning(
            "%d user(s) had notifications unconfirmed after %ss: back to PENDING, sent again if online",
            len(users),
            timeout,
        )
        online = self.presence.read(users).online
        return self._send_pending(set(online)) if online else 0

    def tick(self) -> None:
        """One heartbeat of this process: prove it alive, restore, reap (see app/services/presence/).

        After a Redis outage this process's sockets are registered again and their users get
        what was stored PENDING meanwhile. A dead process is taken out of presence; what it had
        sent and never got confirmed comes back through `sweep`.
        """
        tick = self.presence.heartbeat()
        for dead in tick.dead:
            self.presence.finish_reaping(dead)
            log.warning(PROCESS_REAPED_LOG, dead.process_id, len(dead.user_ids))
        if tick.resynced_users:
            self._send_pending(tick.resynced_users)
