"""RFC 6455 frames from a websocket client, parsed as their bytes arrive however they are split.

Used by the websockets read from eventlet's hub (patches/eventlet_websocket.py); it checks
what eventlet's own reader checks (masking, reserved bits, opcodes, control frames,
fragments, the size limit) and answers with the same close statuses.
"""

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10
_OPCODES = frozenset((0, TEXT, BINARY, CLOSE, PING, PONG))
# Close statuses a client may send (RFC 6455, 7.4): the defined ones and the registered ranges.
VALID_CLOSE_STATUS = frozenset([*range(1000, 1004), *range(1007, 1012), *range(3000, 5000)])


class FailedConnection(Exception):
    """The client broke RFC 6455: the websocket closes with `status`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, as one big-integer operation (eventlet's is a loop per byte)."""
    size = len(payload)
    if not size:
        return payload
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


class FrameParser:
    """Client frames in, whole messages and control frames out, however the bytes were split."""

    __slots__ = ("limit", "buffer", "parts", "opcode", "size", "failure")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes of a message (engineio's max_http_buffer_size)
        self.buffer = b""  # the start of a frame not complete yet
        self.parts: list[bytes] | None = None  # a fragmented message's frames so far
        self.opcode = 0  # its opcode
        self.size = 0  # its bytes so far
        self.failure: FailedConnection | None = None  # the frame that broke the protocol

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The (opcode, payload) of each message and control frame that `data` completes, up to
        a frame that breaks the protocol (then `failure` says how, and nothing more is read)."""
        buffer = self.buffer + data if self.buffer else data
        out, position, end = [], 0, len(buffer)
        try:
            while end - position >= 2 and self.failure is None:
                frame = self._frame(buffer, position, end)
                if frame is None:
                    break
                position, fin, opcode, payload = frame
                message = self._message(fin, opcode, payload)
                if message is not None:
                    out.append(message)
        except FailedConnection as failed:
            self.failure, position = failed, end
        self.buffer = buffer[position:]
        return out

    def _frame(self, buffer: bytes, position: int, end: int):
        """(next position, fin, opcode, unmasked payload), or None while incomplete."""
        first, second = buffer[position], buffer[position + 1]
        fin, opcode, length = first & 0x80, first & 0x0F, second & 0x7F
        if first & 0x70:
            raise FailedConnection(1002, "RSV1, RSV2, RSV3: MUST be 0 (no extension negotiated)")
        if opcode not in _OPCODES:
            raise FailedConnection(1002, "Unknown opcode received.")
        if not second & 0x80:
            raise FailedConnection(1002, "A client MUST mask all frames that it sends to the server")
        if opcode & 8 and (not fin or length > 125):
            raise FailedConnection(1002, "Control frames must be whole and at most 125 bytes")
        head = position + 2
        if length >= 126:
            extra = 2 if length == 126 else 8
            if end - head < extra:
                return None
            length = int.from_bytes(buffer[head : head + extra], "big")
            head += extra
        if length > self.limit - (self.size if not opcode & 8 else 0):
            raise FailedConnection(1009, f"Incoming message above the length limit of {self.limit} bytes.")
        if end - head < 4 + length:
            return None
        mask = buffer[head : head + 4]
        payload = unmask(buffer[head + 4 : head + 4 + length], mask)
        return head + 4 + length, fin, opcode, payload

    def _message(self, fin: int, opcode: int, payload: bytes):
        """A whole (opcode, payload) once a message's last frame is in; None before."""
        if opcode & 8:
            return opcode, payload
        if opcode and self.parts is not None:
            raise FailedConnection(1002, "Received a non-continuation opcode within fragmented message.")
        if not opcode and self.parts is None:
            raise FailedConnection(1002, "Received continuation opcode with no previous fragments received.")
        if fin and self.parts is None:
            return opcode, payload
        if self.parts is None:
            self.parts, self.opcode, self.size = [], opcode, 0
        self.parts.append(payload)
        self.size += len(payload)
        if not fin:
            return None
        whole, opcode = b"".join(self.parts), self.opcode
        self.parts, self.size = None, 0
        return opcode, whole


def close_status(payload: bytes) -> int:
    """The status to answer a client's close frame with (RFC 6455, 5.5.1 and 7.4)."""
    if not payload:
        return 1000
    status = int.from_bytes(payload[:2], "big") if len(payload) > 1 else 0
    if status not in VALID_CLOSE_STATUS:
        return 1002
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return 1002
    return status
