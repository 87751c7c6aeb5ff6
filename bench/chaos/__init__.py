"""Chaos run of the delivery guarantees: `make chaos`, `python -m bench.chaos [--quick] [--sqlite]`.

Users come and go every way a connection ends (a clean disconnect, a TCP reset, a client
that goes silent until the server's ping timeout, a move to the other process) while an
admin posts at a steady rate; meanwhile one process is killed (SIGKILL) and restarted,
the other is stopped (SIGTERM) and restarted, and Redis is restarted. Then posting stops,
every user connects once more and stays until nothing of theirs is PENDING or sent but
unconfirmed, and every notification is accounted for, per kind of client:

- acknowledging clients (at least once): none *lost* (never received, yet not PENDING)
  and none *stuck* (still PENDING after the final connect);
- plain clients (at most once): none *sent again* to the user. One lost on a dying
  connection is counted, and allowed.

A send is told apart by the notification's `deliveredAt`: the server stamps it each time
it marks the row DELIVERED in order to send it. Two arrivals of one id with one
`deliveredAt` on two sockets are one send reaching two sockets of the user (a move
overlaps two connections); two `deliveredAt`s, or one socket getting one send twice, are
two sends.

settings.py holds the sizes, servers.py the processes and the faults, actors.py the users
and the poster, accounting.py what became of each notification, run.py the run itself.
"""

from bench.chaos.run import Outcome, run
from bench.chaos.settings import FULL, QUICK, Settings

__all__ = ["FULL", "QUICK", "Outcome", "Settings", "run"]
