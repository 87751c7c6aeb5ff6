"""The delivery core: who gets what, recorded, confirmed and re-sent.

Plain Python: it never talks to Socket.IO itself. Its collaborators come in as Protocols
(ports.py): the store (app/services/store.py), presence (app/services/presence/) and the
transport (app/realtime/transport.py); the factory wires them once (app/__init__.py).

- core.py: `Delivery`, create / connect / disconnect / send_pending / sweep / tick;
- sends.py: each send routed by a presence read, then followed to where its users moved;
- confirmations.py: what each socket of this process was sent, and the batched confirmations.
"""

from app.delivery.confirmations import Confirmations, Tracker
from app.delivery.core import Delivery
from app.delivery.ports import DeadProcess, Holders, Presence, Reading, Route, Store, Tick, Transport

__all__ = [
    "Confirmations",
    "DeadProcess",
    "Delivery",
    "Holders",
    "Presence",
    "Reading",
    "Route",
    "Store",
    "Tick",
    "Tracker",
    "Transport",
]
