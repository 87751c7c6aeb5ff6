"""Room bookkeeping that stays cheap with tens of thousands of connections."""

import socketio


class IndexedRoomsMixin(socketio.Manager):
    """Keeps, per socket, the rooms it is in.

    python-socketio (5.x) finds a disconnecting socket's rooms by scanning every
    room of the namespace, one private room per user and per socket: quadratic in the
    number of connections (bench/README.md, "Measurements behind the code"). With this
    index, each disconnect costs a few dict operations.
    """

    def _index(self) -> dict[tuple[str, str], set]:
        # initialize() runs on the first connection; be ready before it too
        if not hasattr(self, "_rooms_of"):
            self._rooms_of = {}
        return self._rooms_of

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._index().setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        rooms = self._index().get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._index()[(namespace, sid)]

    def get_rooms(self, sid, namespace):
        """The rooms a client is in (without the namespace-wide one)."""
        return [room for room in self._index().get((namespace, sid), ()) if room is not None]

    def basic_disconnect(self, sid, namespace, **kwargs):
        """python-socketio's `basic_disconnect`, with the room scan replaced by the index."""
        if namespace not in self.rooms:
            return
        for room in list(self._index().get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]
