"""What a closing socket never acknowledged goes back to PENDING, to be sent again.

An acknowledging socket's unacknowledged sends go back unless something else confirmed them
meanwhile (another socket's acknowledgement, a plain socket); if the user still has a socket,
they are sent again at once. A plain socket leaves nothing: its sends were confirmed as sent.

When the user's other socket is on another process, that socket was sent the same
notifications, and its process writes the acknowledgements it gets once every FLUSH_SECONDS.
Putting them back at once sent them a second time whenever the close came inside that window
(a phone that leaves Wi-Fi keeps its old socket open, silent, until the ping times out), so
they wait GRACE_SECONDS first.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from app import metrics
from app.delivery.confirmations import FLUSH_SECONDS, Confirmations
from app.delivery.ports import Presence, Store

# The name operators' log filters select delivery lines by.
log = logging.getLogger("app.services.delivery")

# Log line that operators and tests read (tests/support/logs.py), once the put-back is done.
DISCONNECTED_LOG = "user %s disconnected (sid %s); %d unacknowledged put back"

GRACE_SECONDS = 10 * FLUSH_SECONDS


@dataclass
class PutBack:
    """Puts back closed sockets' unacknowledged sends.

    `later(seconds, task)` runs `task` in the background after `seconds`.
    """

    store: Store
    presence: Presence
    confirmations: Confirmations
    send_pending: Callable[[set[str]], int]
    later: Callable[[float, Callable[[], None]], None]
    _waiting: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # sid: (user, sends)
    _stopping: bool = False  # no grace once the process is stopping: it may not outlive it

    def closed(self, user_id: str, sid: str, unacknowledged: list[str]) -> None:
        """Socket `sid` of `user_id` closed without acknowledging these sends."""
        if (
            unacknowledged
            and not self._stopping
            and self.presence.shared
            and self.presence.read([user_id]).online
        ):
            self._waiting[sid] = (user_id, unacknowledged)
            self.later(GRACE_SECONDS, lambda: self._after_grace(sid))
        else:
            self._put_back(user_id, sid, unacknowledged)

    def waiting_now(self) -> None:
        """Put back at once what is waiting out its grace, and from now on without one (stopping)."""
        self._stopping = True
        for sid in list(self._waiting):
            self._after_grace(sid)

    def _after_grace(self, sid: str) -> None:
        waiting = self._waiting.pop(sid, None)
        if waiting is None:
            return
        try:
            self._put_back(waiting[0], sid, waiting[1])
        except Exception:  # noqa: BLE001  (the sweeper puts back what stays unconfirmed)
            log.exception("could not put back what socket %s left unacknowledged", sid)

    def _put_back(self, user_id: str, sid: str, unacknowledged: list[str]) -> None:
        requeued = 0
        if unacknowledged:
            self.confirmations.flush()  # what this process's sockets acknowledged is written first
            requeued = len(self.store.requeue(unacknowledged))
            if requeued and self.presence.read([user_id]).online:
                metrics.RESENT_SOCKET_CLOSED.inc(self.send_pending({user_id}))
        log.info(DISCONNECTED_LOG, user_id, sid, requeued)
        metrics.REQUEUED_SOCKET_CLOSED.inc(requeued)
