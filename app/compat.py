"""Corrections to library behaviour that the service's guarantees depend on."""

import logging

from engineio import packet as eio_packet

log = logging.getLogger(__name__)


def close_on_malformed_engineio_packets() -> None:
    """Turn an undecodable Engine.IO packet into a CLOSE packet.

    python-engineio (4.x) decodes websocket frames outside its error handling: a
    garbage frame ends the handler without closing the socket, so the Socket.IO
    disconnect handler never runs and the user keeps counting as online (their new
    notifications would be marked DELIVERED to a dead connection) until the ping
    timeout. As a CLOSE packet, the frame closes the connection the normal way.
    """
    original = eio_packet.Packet.decode
    if getattr(original, "closes_on_error", False):
        return

    def decode(self, encoded_packet):
        try:
            return original(self, encoded_packet)
        except ValueError as exc:  # includes binascii.Error from bad base64
            log.info("malformed Engine.IO packet (%s): closing the connection", exc)
            self.packet_type, self.data, self.binary = eio_packet.CLOSE, None, False

    decode.closes_on_error = True
    eio_packet.Packet.decode = decode
