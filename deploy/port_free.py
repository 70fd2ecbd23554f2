"""`python3 deploy/port_free.py PORT`: exit 0 when daphne could listen on 127.0.0.1:PORT.

`make run` calls it before its set-up, so a taken port is reported in a second,
not after minutes of installing. Plain Python (no venv needed yet): the check
binds the port as daphne would and lets it go at once.
"""

from __future__ import annotations

import socket
import sys

HOST = "127.0.0.1"


def is_free(port: int) -> bool:
    """Whether a server could listen on HOST:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As daphne (Twisted) does: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def main(argv: list[str]) -> int:
    """Check the port; on a taken one, name the next free port to try."""
    text = argv[1] if len(argv) > 1 else ""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        print(f"make run: PORT must be a number from 1 to 65535, got {text!r}", file=sys.stderr)
        return 2
    port = int(text)
    if is_free(port):
        return 0
    other = next((p for p in range(port + 1, min(port + 100, 65536)) if is_free(p)), None)
    hint = f"; try make run PORT={other}" if other else ""
    print(f"make run: port {port} is in use{hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
