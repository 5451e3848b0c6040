"""ADMIN_PORT over a real socket: its own listener, its own answers, JSON errors for
anything else, and the main port does not serve it."""

import re
import socket

import pytest

from support.realhttp import Client, start_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service():
    child = start_service({"ADMIN_PORT": "0"})
    line = child.wait_for(r"management port http://\S+:(\d+)", timeout=10)
    assert line is not None, child.log()
    child.admin_port = int(re.search(r"management port http://\S+:(\d+)", line).group(1))
    yield child
    child.stop()


def raw(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_metrics_are_served_on_the_management_port_only(service):
    user = Client("127.0.0.1", service.port)
    assert user.post("/", {"name": "Ann"}).status == 200
    metrics = Client("127.0.0.1", service.admin_port).get("/metrics")
    assert metrics.status == 200 and b"sessions_created_total 1.0" in metrics.body
    assert Client("127.0.0.1", service.port).get("/metrics").status == 404  # not on the public port
    assert Client("127.0.0.1", service.admin_port).get("/healthz").json() == {"status": "ok"}
    assert Client("127.0.0.1", service.admin_port).get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /name HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 405),
    (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"BAD\r\n\r\n", 400),
])
def test_bad_input_to_the_management_port_is_a_json_4xx_never_a_500(service, request_bytes, status):
    answer = raw(service.admin_port, request_bytes)
    assert re.match(rb"HTTP/1\.[01] %d " % status, answer), answer[:200]
    assert b"application/json" in answer and b'"error"' in answer


def test_without_admin_port_there_is_no_management_listener():
    child = start_service()
    try:
        assert child.wait_for("management port", timeout=1) is None
    finally:
        child.stop()


def test_the_management_port_cuts_off_trickling_requests_and_caps_a_client():
    child = start_service({"ADMIN_PORT": "0", "REQUEST_TIMEOUT": "2"})
    held = []
    try:
        port = int(re.search(r"management port http://\S+:(\d+)",
                             child.wait_for(r"management port http://\S+:(\d+)", timeout=10)).group(1))
        for _ in range(30):  # one client, each a header byte now and then: none ever finished
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nH")
            held.append(sock)
        # A fresh probe from elsewhere is answered: that client holds at most its share.
        assert Client("127.0.0.1", port, timeout=5, source="127.0.0.2").get("/healthz").status == 200
        answers = []
        for sock in held:
            try:
                answers.append(sock.recv(64)[:12])
            except OSError:
                answers.append(b"")
        assert b"HTTP/1.1 429" in answers and b"HTTP/1.1 408" in answers  # over its share; too slow
    finally:
        for sock in held:
            sock.close()
        child.stop()
