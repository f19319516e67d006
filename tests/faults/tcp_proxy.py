"""A loopback TCP proxy that a test controls: forward, refuse, or black-hole a server.

Put it between a client (a gateway's store URL) and a real server (PostgreSQL), then switch
its mode while the client runs:

* ``forward``: bytes pass both ways (the normal case);
* ``refuse``: the listening socket is closed (new connections get ECONNREFUSED) and every
  open connection is reset (RST), as when the server's host is down;
* ``blackhole``: connections are accepted and their bytes read, but nothing is forwarded
  and nothing ever comes back, as with a stopped (SIGSTOP) proxy or a silent middlebox.
  The client's kernel sees every byte acknowledged, so TCP keepalives and user timeouts
  never fire: only an application-level timeout notices.

Going back to ``forward`` resets every connection that lost bytes (its protocol state is
gone), as a middlebox that lost its state would. Threads only: each connection has two pump
threads; everything is closed by :meth:`TcpProxy.close` (or the context manager).
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress
from types import TracebackType
from typing import Literal

Mode = Literal["forward", "refuse", "blackhole"]

_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Abort a connection (linger 0: an RST on close).

    ``shutdown`` comes first: a bare ``close`` from another thread neither wakes a pump
    blocked in ``recv`` on the socket nor ends the connection while that call holds it.
    """
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


class _Link:
    """One client connection and (unless it arrived during a black hole) its upstream."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.lost_bytes = upstream is None
        self.closed = False

    def reset(self) -> None:
        self.closed = True
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class TcpProxy:
    """Listens on 127.0.0.1:``port`` (free by default) and relays to ``target``."""

    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._mode: Mode = "forward"
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self.dropped_bytes = 0
        self.port = port
        self._listen()

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        """Switch mode: see the module docstring for what each does to open connections."""
        with self._lock:
            previous, self._mode = self._mode, mode
            links = list(self._links)
        if mode == "refuse":
            self._stop_listening()
            for link in links:
                link.reset()
        elif mode == "forward" and previous != "forward":
            for link in links:
                if link.lost_bytes:
                    link.reset()
        if mode != "refuse" and self._listener is None:
            self._listen()

    def close(self) -> None:
        """Stop listening, reset every connection and wait (bounded) for the threads."""
        with self._lock:
            self._mode = "refuse"
            links = list(self._links)
        self._stop_listening()
        for link in links:
            link.reset()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._start(self._accept_loop, listener)

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            listener.close()

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refuse mode or close()
            self.accepted += 1
            upstream: socket.socket | None = None
            if self._mode == "forward":
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    _reset(client)
                    continue
            link = _Link(client, upstream)
            with self._lock:
                self._links = [item for item in self._links if not item.closed]
                self._links.append(link)
                mode = self._mode
            if mode == "refuse":  # switched while this one was being accepted
                link.reset()
                continue
            self._start(self._pump, link, client, upstream)
            if upstream is not None:
                self._start(self._pump, link, upstream, client)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket | None) -> None:
        """Relay source → sink while forwarding; read and drop while black-holed."""
        while not link.closed:
            try:
                data = source.recv(_CHUNK)
            except OSError:
                break
            if not data:
                break
            if self._mode == "forward" and sink is not None and not link.lost_bytes:
                try:
                    sink.sendall(data)
                except OSError:
                    break
            else:
                link.lost_bytes = True
                self.dropped_bytes += len(data)
        link.reset()
