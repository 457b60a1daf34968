"""Attacks on the edge node's HTTP endpoint and files (issue 11 items 9, 10, slow bodies)."""

from __future__ import annotations

import os
import socket
import stat
import time

import requests
from faults.stack import jpeg
from security.stack import Scale, SecurityStack


def _multipart(parts: int, boundary: str = "b") -> bytes:
    chunk = f"--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n".encode()
    return chunk * parts + f"--{boundary}--\r\n".encode()


def _nested(depth: int) -> tuple[str, bytes]:
    body = b"x"
    for level in range(depth, 0, -1):
        inner = f"b{level}"
        body = (f"--{inner}\r\nContent-Type: multipart/mixed; boundary=b{level + 1}\r\n\r\n").encode() + body + \
            f"\r\n--{inner}--\r\n".encode()
    return "multipart/form-data; boundary=b1", body


def test_a_multipart_body_of_many_parts_is_refused_quickly(stack: SecurityStack, scale: Scale) -> None:
    start = time.monotonic()
    response = requests.post(stack.node.http_url, data=_multipart(scale.multipart_parts), timeout=60,
                             headers={**stack.node_token(), "Content-Type": "multipart/form-data; boundary=b"})
    assert 400 <= response.status_code < 500 and time.monotonic() - start < 5.0


def test_deeply_nested_multipart_is_a_4xx(stack: SecurityStack, scale: Scale) -> None:
    content_type, body = _nested(scale.nesting)
    response = requests.post(stack.node.http_url, data=body, timeout=60,
                             headers={**stack.node_token(), "Content-Type": content_type})
    assert 400 <= response.status_code < 500


def test_a_slow_body_is_cut_off_and_does_not_lock_others_out(stack: SecurityStack) -> None:
    port = stack.node.confs["edge_node"]["http_port"]
    slow = socket.create_connection(("127.0.0.1", port), timeout=5)
    slow.sendall(f"POST /Inference HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stack.node_token()['Authorization'][7:]}"
                 f"\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n".encode())
    deadline = time.monotonic() + 40
    cut = False
    try:
        while time.monotonic() < deadline:  # a byte a second: never idle, never done
            try:
                slow.sendall(b"\xff")
            except OSError:
                cut = True
                break
            slow.settimeout(1.0)
            try:
                slow.recv(1024)  # an answer or a close: the node gave up on the body
                cut = True
                break
            except (TimeoutError, socket.timeout):
                pass
        answer = requests.post(stack.node.http_url, data=jpeg(7), timeout=30,
                               headers={**stack.node_token(), "Content-Type": "image/jpeg"})
    finally:
        slow.close()
    assert cut, "a body trickling in was allowed to take 40 s"
    assert answer.status_code == 200


def test_node_state_files_are_private(stack: SecurityStack) -> None:
    outbox = stack.node.confs["edge_node"]["outbox_path"]
    files = [p for p in (outbox, f"{outbox}-wal", f"{outbox}-shm") if os.path.exists(p)]
    modes = {p: stat.S_IMODE(os.stat(p).st_mode) for p in files}
    assert modes and set(modes.values()) == {0o600}, modes
    store = stack.node.confs["edge_node"]["model_store"]
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
