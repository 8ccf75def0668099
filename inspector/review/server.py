"""The review station's HTTP server: a socket bound before the server starts (so port 0 works and the URL printed is
the real one) and uvicorn, in the foreground (``inspector review``, until Ctrl-C) or in a thread (tests).

uvicorn's access log is off: the login link carries the token in its query string.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote

import uvicorn

from inspector.review.app import create_app

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str = "127.0.0.1", port: int = 8080) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class ReviewServer:
    """uvicorn serving ``app`` on the already bound ``sock``."""

    def __init__(self, app, sock: socket.socket) -> None:
        self.sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                                proxy_headers=False, server_header=False, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port/`` of the bound socket (IPv6 hosts in brackets)."""
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def login_url(self, token: str) -> str:
        """The link that opens the station with ``token`` (sets its cookie)."""
        return f"{self.url}login?token={quote(token, safe='')}"

    def run(self) -> None:
        """Serves until Ctrl-C or SIGTERM (in the main thread) or :meth:`stop`."""
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> ReviewServer:
        """Serves in a background thread; returns once it accepts connections."""
        self._thread = threading.Thread(target=self.run, name="review-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the review server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ReviewServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def review_server(audit_dir: Path, host: str = "127.0.0.1", port: int = 8080, token: str | None = None) -> ReviewServer:
    """The server ``inspector review`` runs: the station over ``audit_dir`` on a socket bound to ``host``:``port``.

    On a loopback host the station answers only requests addressed to a loopback name, so a web page cannot reach
    it through a DNS name rebound to 127.0.0.1 (it has no token to stop that otherwise).
    """
    allowed = (*LOOPBACK_NAMES, host) if is_loopback(host) else None
    return ReviewServer(create_app(Path(audit_dir), token, allowed), bind(host, port))
