"""A byte-for-byte TCP relay on 127.0.0.1 that can cut one answer stream mid-way, as a mobile network
or an impatient proxy does: armed with `cut_after(marker)`, it forwards the server's bytes as they
come and, on the first connection whose answer contains `marker` (say, an SSE event id), cuts that
connection right after passing the marker on. New connections are relayed as usual.
"""

from __future__ import annotations

import socket
import threading

from tests.harness import free_port


class StreamCutter:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_server: bool) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
                if from_server and self._take(data):
                    break
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _take(self, data: bytes) -> bool:
        """Whether this chunk carries the armed marker (which disarms it)."""
        with self._lock:
            if self._marker is None or self._marker not in data:
                return False
            self._marker = None
            self.cuts += 1
            return True
