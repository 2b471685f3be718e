"""A small loopback TCP proxy that a test can cut, to play a database outage.

``Proxy(target_port)`` listens on an ephemeral 127.0.0.1 port and forwards every
connection to ``127.0.0.1:target_port``. ``cut()`` closes every live connection and
refuses new ones (accepted sockets are closed at once) until ``restore()``: to its
clients the database is gone, as in a failover, while the server keeps running for
everybody else. ``close()`` stops it. One daemon thread accepts, one per connection
forwards (at most ``max_connections``, the others are refused), and ``close()`` joins them.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

HOST = "127.0.0.1"


class Proxy:
    def __init__(self, target_port: int, *, max_connections: int = 64) -> None:
        self.target = (HOST, target_port)
        self.max_connections = max_connections
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)  # so the accept loop sees close() promptly
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._threads: set[threading.Thread] = set()
        self._cut = threading.Event()
        self._closed = threading.Event()
        #: Connections accepted and forwarded, and refused (cut, or too many).
        self.forwarded = 0
        self.refused = 0
        self._acceptor = threading.Thread(target=self._accept, name=f"proxy-{self.port}")
        self._acceptor.daemon = True
        self._acceptor.start()

    # -- control --------------------------------------------------------------------------

    def cut(self) -> None:
        """Drop every live connection and refuse new ones until ``restore()``."""
        self._cut.set()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            _shut(*pair)  # the forwarding thread wakes up, sees EOF and closes both

    def restore(self) -> None:
        """Accept and forward connections again."""
        self._cut.clear()

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        """Stop listening, drop every connection and join every thread."""
        self._closed.set()
        self.cut()
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- threads --------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                full = len(self._threads) >= self.max_connections
            if self._cut.is_set() or self._closed.is_set() or full:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self.refused += 1
                _close(client)
                continue
            pair = (client, upstream)
            thread = threading.Thread(target=self._forward, args=(pair,), name="proxy-pipe")
            thread.daemon = True
            with self._lock:
                self._pairs.add(pair)
                self._threads.add(thread)
            self.forwarded += 1
            thread.start()
            if self._cut.is_set():  # cut() ran between our check and the registration
                _shut(*pair)

    def _forward(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        other = {client: upstream, upstream: client}
        try:
            for sock in pair:
                sock.setblocking(True)
                sock.settimeout(None)
            with selectors.DefaultSelector() as selector:
                for sock in pair:
                    selector.register(sock, selectors.EVENT_READ)
                while not self._cut.is_set():
                    for key, _ in selector.select(timeout=0.5):
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = source.recv(65536)
                        if not data:
                            return
                        other[source].sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._pairs.discard(pair)
                self._threads.discard(threading.current_thread())
            _shut(*pair)
            _close(*pair)


def _shut(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()
