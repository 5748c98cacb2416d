"""A TCP proxy on loopback that can black-hole its traffic for a while: a network cut, in the test."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class FaultyProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>; cut() drops every byte for a while.

    During a cut nothing is forwarded in either direction and the connections stay open, as with a
    partition (no RST): the services must notice through missed heartbeats. When the cut ends,
    the connections that lived through it are closed; new ones work again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut_until = 0.0
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def cutting(self) -> bool:
        return time.monotonic() < self._cut_until

    def cut(self, seconds: float) -> None:
        self._cut_until = time.monotonic() + seconds
        time.sleep(seconds)
        self.sever()

    def sever(self) -> None:
        """Close every connection now (both ends see a reset), as a dying peer or NAT would."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut(0)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()  # the broker is down: refuse, as it would
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, destination: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.cutting:
                    destination.sendall(data)
        except OSError:
            pass
        for sock in (source, destination):
            with contextlib.suppress(OSError):
                sock.close()
