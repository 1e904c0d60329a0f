"""A small HTTP relay on 127.0.0.1 between an agent and the server, for fault tests.

It forwards one request per connection (it asks the server to close after answering), so it can
`stop()` (a partition: the listener closes and every open connection is cut, held polls included),
`start()` again on the same port, and `drop_responses(path_part, count)`: forward the next matching
requests and cut the connection instead of passing the server's answer back, the way a network
failure after the server committed looks to the agent.
"""

from __future__ import annotations

import re
import socket
import threading

from tests.harness import free_port


class FaultProxy:
    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._drop: list[list] = []
        self.dropped: list[str] = []
        self.forwarded: list[str] = []

    def start(self) -> FaultProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def drop_responses(self, path_part: str, count: int = 1, *, status: int | None = None) -> None:
        """Cut the next `count` responses to requests whose path contains `path_part` (and whose
        status is `status`, when given) after the server has answered them."""
        with self._lock:
            self._drop.append([path_part, count, status])

    def _should_drop(self, path: str, response: bytes) -> bool:
        code = response.split(b" ", 2)[1] if response.count(b" ") >= 2 else b""
        with self._lock:
            for rule in self._drop:
                part, count, status = rule
                if part in path and count > 0 and (status is None or code == str(status).encode()):
                    rule[1] -= 1
                    return True
        return False

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            head, body = _read_request(client)
            if head is None:
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            path = request_line.split(" ")[1] if " " in request_line else ""
            head = re.sub(rb"(?im)^connection:[^\r\n]*\r\n", b"", head + b"\r\n")[:-2] + b"\r\nConnection: close"
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._open.add(upstream)
            upstream.sendall(head + b"\r\n\r\n" + body)
            response = b""
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                response += data
            if self._should_drop(path, response):
                self.dropped.append(path)
                return  # the server has done its work; the agent never hears of it
            self.forwarded.append(path)
            client.sendall(response)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._open.discard(sock)
                    sock.close()


def _read_request(sock: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body
