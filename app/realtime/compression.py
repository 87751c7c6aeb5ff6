"""Websocket compression (permessage-deflate): off by default, on with a size threshold when asked.

eventlet's websocket server (0.41) accepts `permessage-deflate` from every client that
offers it (every browser, Node's `socket.io-client`) and then compresses every message,
however small, with a zlib context kept for the life of the socket in each direction:
about 90 KiB more per idle socket with the Node client. Node's Socket.IO server turns
compression off by default for that reason, and so does this one. WEBSOCKET_COMPRESSION=1
turns it on; messages under WEBSOCKET_COMPRESSION_THRESHOLD bytes then go uncompressed
(RFC 7692 lets any message go without the compressed bit), as Node's `ws` does.
"""

from engineio import Server as EngineIOServer

# The eventlet release whose handshake and frame writer (`_negotiate_permessage_deflate`,
# `_handle_hybi_request`, `RFC6455WebSocket._pack_message`) this module was written for.
EVENTLET_VERSION = "0.41.3"


def configure(eio: EngineIOServer, enabled: bool, threshold: int) -> None:
    """Make `eio`'s websockets negotiate compression only when `enabled`, then above `threshold`."""
    if eio.async_mode != "eventlet":
        return  # `flask` commands: the threading mode's websockets are simple-websocket's
    _check_version()
    from eventlet.websocket import RFC6455WebSocket

    class ThresholdDeflateWebSocket(RFC6455WebSocket):
        """A compressing websocket that sends messages under `threshold` bytes as they are."""

        def _pack_message(self, message, masked=False, continuation=False, final=True, control_code=None):
            size = len(message) if isinstance(message, bytes) else len(message.encode("utf-8"))
            if size >= threshold or continuation or control_code:
                return super()._pack_message(message, masked, continuation, final, control_code)
            extensions, self.extensions = self.extensions, {}  # no compressor for this one
            try:
                return super()._pack_message(message, masked, continuation, final, control_code)
            finally:
                self.extensions = extensions

    base = eio._async["websocket"]

    class WebSocketWSGI(base):
        """engineio's eventlet websocket handshake, with compression as configured."""

        def _negotiate_permessage_deflate(self, extensions):
            return super()._negotiate_permessage_deflate(extensions) if enabled else None

        def _handle_hybi_request(self, environ):
            websocket = super()._handle_hybi_request(environ)
            if websocket.extensions.get("permessage-deflate") is not None:
                websocket.__class__ = ThresholdDeflateWebSocket
            return websocket

    # engineio looks its websocket class up on the server instance: this server only.
    eio._async = {**eio._async, "websocket": WebSocketWSGI}


def _check_version() -> None:
    from importlib.metadata import version

    installed = version("eventlet")
    if installed != EVENTLET_VERSION:
        raise RuntimeError(
            f"app/realtime/compression.py was written for eventlet {EVENTLET_VERSION}, "
            f"but eventlet {installed} is installed: check its websocket handshake and frame "
            "writer, then update EVENTLET_VERSION"
        )
