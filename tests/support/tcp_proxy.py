"""A TCP proxy the test controls, to cut a database off without touching the shared server.

``TcpProxy(host, port)`` listens on 127.0.0.1 (a free port) and forwards every connection
to ``host:port``. The test can then:

* ``down()``: cut every open connection and refuse new ones (the listening socket is
  closed, so clients get "connection refused" at once, as from a stopped server);
* ``up()``: listen again on the same port;
* ``freeze()`` / ``thaw()``: like SIGSTOP and SIGCONT on a proxy process: connections stay
  open and new ones complete the TCP handshake (the kernel does that), but nothing is
  accepted or forwarded until ``thaw()``; bytes sent meanwhile are delivered then;
* ``drop_reply_after(marker)``: let the next client message containing ``marker`` (say
  ``b"COMMIT"``) reach the server, then swallow the server's reply and cut that
  connection: the client cannot know whether its commit landed.

Plain threads and blocking sockets: a handful of connections, nothing clever.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    server: socket.socket
    drop_replies: bool = False
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv()
            except OSError:
                pass
            sock.close()


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``upstream``; cut and restore on demand."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = 0
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accepting = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._drop_marker: bytes | None = None
        self._drop_delay_s = 0.0
        self._thawed = threading.Event()
        self._thawed.set()
        #: how many connections were cut by down() or by a dropped reply
        self.cuts = 0
        self.accepted = 0

    # -- control ---------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self.up()
        return self

    def up(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                listener.bind((self.host, self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    listener.close()
                    raise
                time.sleep(0.1)
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting.set()
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        self._accept_thread.start()

    def down(self) -> None:
        """Refuse new connections and cut every open one."""
        self._accepting.clear()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            pair.close()
        self.cuts += len(pairs)

    def freeze(self) -> None:
        """Stop forwarding and accepting, keeping every connection open (a SIGSTOPped server)."""
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    @property
    def frozen(self) -> bool:
        return not self._thawed.is_set()

    def close(self) -> None:
        self.thaw()
        self.down()

    def drop_reply_after(self, marker: bytes, delay_s: float = 0.3) -> None:
        """Arm: the next client message with ``marker`` reaches the server, its reply is lost."""
        self._drop_delay_s = delay_s
        self._drop_marker = marker

    @property
    def armed(self) -> bool:
        return self._drop_marker is not None

    def url_for(self, url: str) -> str:
        """``url`` (a SQLAlchemy URL string) pointed at this proxy instead of the server."""
        from sqlalchemy.engine import make_url

        return make_url(url).set(host=self.host, port=self.port).render_as_string(hide_password=False)

    # -- plumbing --------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._accepting.is_set():
            if not self._thawed.wait(0.1):
                continue  # frozen: the kernel queues new connections in the backlog
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._accepting.is_set():
                client.close()
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.add(pair)
                self.accepted += 1
            threading.Thread(target=self._pump_up, args=(pair,), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(pair,), daemon=True).start()

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
        pair.close()

    def _pump_up(self, pair: _Pair) -> None:
        """client -> server"""
        try:
            while True:
                data = pair.client.recv(65536)
                if not data:
                    break
                self._thawed.wait()
                marker = self._drop_marker
                if marker is not None and marker in data:
                    self._drop_marker = None
                    pair.drop_replies = True
                    pair.server.sendall(data)
                    time.sleep(self._drop_delay_s)  # the server handles it; its reply is dropped
                    self.cuts += 1
                    break
                pair.server.sendall(data)
        except OSError:
            pass
        self._forget(pair)

    def _pump_down(self, pair: _Pair) -> None:
        """server -> client"""
        try:
            while True:
                data = pair.server.recv(65536)
                if not data:
                    break
                self._thawed.wait()
                if pair.drop_replies:
                    continue
                pair.client.sendall(data)
        except OSError:
            pass
        self._forget(pair)
