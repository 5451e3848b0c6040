"""`python service.py` as users run it: a real process, real sockets."""

import signal
import threading
import time

import pytest

from realhttp import ServiceProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def running():
    process = ServiceProcess()
    yield process
    process.kill()  # no-op when the test already stopped it


def test_the_seed_flow_over_a_socket(running):
    user = running.client()
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
    user = running.client()
    user.post("/", {"name": "Alice"})
    user.get("/name?token=abc")
    user.get("/healthz")
    assert running.stop() == 0
    log = running.log()
    assert " INFO POST / 200 " in log and " INFO GET /name 200 " in log and " INFO GET /healthz 200 " in log
    cookie = user.jar["example.sid"]
    for secret in (cookie, cookie[3:35], "process-secret", "token=abc"):
        assert secret not in log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly(running, signum):
    assert running.client().get("/healthz").status == 200
    assert running.stop(signum) == 0
    assert "Traceback" not in running.log()


def test_sigterm_lets_a_request_in_flight_finish(running):
    # A client that has sent half a request: the server must wait for the rest.
    import socket
    conn = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n")
    time.sleep(0.2)  # the server has read the headers and waits for the body
    running.proc.send_signal(signal.SIGTERM)
    time.sleep(0.6)  # longer than the server's loop tick: it is now draining
    conn.sendall(b'{"name":"Late"} ')
    answer = conn.recv(4096)
    conn.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert running.proc.wait(15) == 0


@pytest.mark.parametrize("env, variable", [
    ({"SESSION_MAX_AGE": "abc"}, "SESSION_MAX_AGE"), ({"COOKIE_SECURE": "sometimes"}, "COOKIE_SECURE"),
    ({"SESSION_ABSOLUTE_TIMEOUT": "-1"}, "SESSION_ABSOLUTE_TIMEOUT")])
def test_an_invalid_setting_stops_startup_with_one_line(env, variable):
    import os
    import subprocess
    import sys
    from realhttp import ROOT
    result = subprocess.run([sys.executable, os.path.join(ROOT, "service.py")], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0]


def test_sigterm_while_waiting_for_an_unreachable_mongodb_exits_0():
    import os
    import subprocess
    import sys
    from realhttp import ROOT, free_port
    url = f"mongodb://127.0.0.1:{free_port()}/app?timeoutMS=3000"  # nothing listens there
    child = subprocess.Popen([sys.executable, os.path.join(ROOT, "service.py")], env={**os.environ, "MONGO_URL": url},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # inside ensure_indexes, waiting for the server
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=15)
        assert child.returncode == 0 and "Traceback" not in stderr
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)


def test_a_port_in_use_is_a_one_line_error_and_exit_1(running):
    import os
    import subprocess
    import sys
    from realhttp import ROOT
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(running.port)}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "service.py")], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{running.port}" in result.stderr and "Traceback" not in result.stderr
