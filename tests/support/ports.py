"""TCP ports on 127.0.0.1: a free one for a new process, and whether one refuses connections."""

import socket
from contextlib import closing

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_refuses(port: int) -> bool:
    """True when a TCP connect to 127.0.0.1:port is refused (nothing listens)."""
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
