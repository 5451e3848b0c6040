"""`python service.py` as users run it: a real process, real sockets."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

from support.child import Child
from support.basics import skip_unless
from support.realhttp import ROOT, start_service, user_of
from support.wireserver import free_port

SERVICE = os.path.join(ROOT, "service.py")

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


@pytest.fixture
def running():
    process = start_service()
    yield process
    process.kill()  # no-op when the test already stopped it


def test_the_seed_flow_over_a_socket(running):
    user = user_of(running)
    login = user.post("/", {"name": "Alice"})
    assert (login.status, login.json()) == (200, {"name": "Alice"})
    assert "HttpOnly" in login.set_cookies()[0]
    assert user.get("/name").json() == {"name": "Alice"}
    assert user.post("/logout").status == 200
    assert user.jar == {}  # the logout expired the cookie
    assert user.get("/name").status == 404
    assert user.get("/name", headers={"Cookie": "example.sid=" + login.set_cookies()[0].split(";")[0][12:]}).status == 404


def test_startup_names_the_address_and_the_store_and_warns(running):
    assert any(f"listening on http://127.0.0.1:{running.port} (store: embedded in-memory)" in line
               for line in running.lines)
    assert any("lost when the process stops" in line for line in running.lines)


def test_access_lines_carry_no_cookie_session_id_or_secret(running):
    user = user_of(running)
    user.post("/", {"name": "Alice"})
    user.get("/name?token=abc")
    user.get("/healthz")
    assert running.stop() == 0
    log = running.log()
    assert " INFO POST / 200 " in log and " INFO GET /name 200 " in log and " INFO GET /healthz 200 " in log
    cookie = user.jar["example.sid"]
    sid, _, signature = urllib.parse.unquote(cookie)[2:].rpartition(".")
    for secret in (cookie, sid, signature, "process-secret", "token=abc"):
        assert secret not in log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly(running, signum):
    assert user_of(running).get("/healthz").status == 200
    assert running.stop(signum) == 0
    assert "Traceback" not in running.log()


def test_sigterm_serves_connections_accepted_before_it_whose_request_comes_after():
    # A client connects, then sends its request a moment later; the service is told to stop in
    # between. The connection was accepted, so its request must be answered, not reset.
    service = start_service({"SESSION_SECRET": "x" * 32})
    connections = [socket.create_connection(("127.0.0.1", service.port), timeout=10) for _ in range(8)]
    try:
        assert user_of(service).get("/healthz").status == 200  # by now the 8 were accepted too
        service.send(signal.SIGTERM)
        assert service.wait_for("stopping: finishing requests in flight", 10) is not None
        answers = []
        for conn in connections:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answers.append(b"".join(iter(lambda: conn.recv(65536), b"")))
        assert all(answer.startswith(b"HTTP/1.1 200 OK") for answer in answers), answers
        assert service.proc.wait(15) == 0
    finally:
        for conn in connections:
            conn.close()
        service.kill()


def test_as_pid_1_of_its_own_namespace_sigterm_still_stops_it_cleanly():
    # In a container the service is PID 1, for which the kernel drops every signal that has
    # no handler: SIGTERM must work because the service installs one, not by default.
    skip_unless(None if shutil.which("unshare") else "unshare (util-linux) is not installed")
    argv = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, SERVICE]
    env = {"HOST": "127.0.0.1", "PORT": "0", "SESSION_SECRET": "x" * 32}
    wrapper = Child(argv, env=env, ready=r"listening on http://\S+:(\d+) ")
    try:
        assert user_of(wrapper).get("/healthz").status == 200
        with open(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children") as children:
            (service_pid,) = map(int, children.read().split())  # the service, PID 1 inside
        with open(f"/proc/{service_pid}/status") as status:
            assert re.search(r"^NSpid:\s+\d+\s+1$", status.read(), re.M)
        os.kill(service_pid, signal.SIGTERM)
        assert wrapper.proc.wait(15) == 0  # unshare exits with its child's code
        assert "Traceback" not in wrapper.log() and "stopping" in wrapper.log()
    finally:
        wrapper.kill()


def test_sigterm_lets_a_request_in_flight_finish(running):
    conn = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    # A whole request first: the server has accepted this connection.
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while not first.endswith(b'{"status": "ok"}'):  # headers and body may come in separate reads
        chunk = conn.recv(4096)
        assert chunk, first
        first += chunk
    assert first.startswith(b"HTTP/1.1 200")
    # Then half a request: the server must wait for the rest.
    conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n")
    time.sleep(0.5)  # let the server read the headers (nothing to observe from outside)
    running.send(signal.SIGTERM)
    assert running.wait_for("stopping: finishing requests in flight", timeout=10)
    conn.sendall(b'{"name":"Late"} ')
    answer = conn.recv(4096)
    conn.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert running.proc.wait(15) == 0


@pytest.mark.parametrize("env, variable", [
    ({"SESSION_MAX_AGE": "abc"}, "SESSION_MAX_AGE"), ({"COOKIE_SECURE": "sometimes"}, "COOKIE_SECURE"),
    ({"SESSION_ABSOLUTE_TIMEOUT": "-1"}, "SESSION_ABSOLUTE_TIMEOUT")])
def test_an_invalid_setting_stops_startup_with_one_line(env, variable):
    result = subprocess.run([sys.executable, SERVICE], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0]


def test_sigterm_while_waiting_for_an_unreachable_mongodb_exits_0():
    url = f"mongodb://127.0.0.1:{free_port()}/app?timeoutMS=3000"  # nothing listens there
    # Ready once it says it is ensuring the TTL index: now waiting for the server.
    with Child([sys.executable, SERVICE], env={"MONGO_URL": url, "PORT": "0"}, ready="ensuring the TTL index") as child:
        assert child.stop(signal.SIGTERM) == 0
        assert "Traceback" not in child.log()


def test_a_port_in_use_is_a_one_line_error_and_exit_1(running):
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(running.port)}
    result = subprocess.run([sys.executable, SERVICE], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{running.port}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid"])
def test_a_bad_host_is_a_one_line_error_and_exit_1(host):
    env = {**os.environ, "HOST": host, "PORT": "0"}
    result = subprocess.run([sys.executable, SERVICE], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on {host}:0" in result.stderr and "Traceback" not in result.stderr
