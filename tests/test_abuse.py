"""One client trying to take the service down when it is exposed directly, over real
sockets to `python service.py`: slow requests, many connections, a login flood,
ambiguous framing, large bodies; and the startup checks that keep promises
(unacknowledged writes, weak secrets, one thread).

Every server here is our own child, stopped by PID; every socket is ours and
closed; every wait is bounded.  Time bounds are the promises ("answers within
1 s"), with margin for a noisy machine, never performance targets."""

import contextlib
import http.client
import os
import socket
import sys
import threading
import time

import pytest

from support.child import Child
from support.realhttp import ROOT, Client, running
from support.wireserver import start_wire_server

pytestmark = pytest.mark.slow


def connect(port, source="127.0.0.1", timeout=5):
    """A connection to the service from `source` (the whole of 127/8 is this machine)."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def read_all(sock):
    """Everything the server sends until it closes (a server that keeps it open fails by timeout)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:  # closed after its answer, with bytes of ours it never read
        pass
    return received


def status_of(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else None


# --- Slow requests: a deadline for the whole request, not only for silence ---

def test_a_request_that_trickles_in_is_cut_off_with_a_408_at_the_deadline():
    with running({"REQUEST_TIMEOUT": "2"}) as service, connect(service.port, timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        for _ in range(20):  # a byte every 0.3 s keeps any idle timeout from firing
            time.sleep(0.3)
            try:
                sock.sendall(b"s")
            except OSError:  # closed by the service, as it should be
                break
        answer = read_all(sock)
        took = time.monotonic() - started
        print(f"a trickling request was answered {answer[:30]!r} after {took:.1f} s")
        assert status_of(answer) == 408 and b'"error"' in answer, answer
        assert 2 <= took < 2 + 2.5


def test_a_body_that_trickles_in_is_cut_off_too():
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
    with running({"REQUEST_TIMEOUT": "2"}) as service, connect(service.port, timeout=10) as sock:
        sock.sendall(head)
        for _ in range(20):
            time.sleep(0.3)
            try:
                sock.sendall(b" ")
            except OSError:
                break
        answer = read_all(sock)
        assert status_of(answer) == 408, answer


def test_a_prompt_request_on_a_connection_kept_open_is_not_cut_off():
    with running({"REQUEST_TIMEOUT": "2"}) as service:
        connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        try:
            for _ in range(3):  # idle between requests longer than the deadline: idleness is not lateness
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                assert (response.status, response.read()) == (200, b'{"status": "ok"}')
                time.sleep(2.5)
            assert connection.sock is not None  # still the one connection
        finally:
            connection.close()


# --- Many connections from one client ---

def test_one_client_cannot_take_every_connection():
    env = {"CONNECTIONS_PER_CLIENT": "20", "CONNECTION_LIMIT": "50"}
    held = []
    with running(env) as service:
        try:
            for _ in range(20):  # one client's share, each with a request it never finishes
                held.append(connect(service.port))
                held[-1].sendall(b"GET /healthz HTTP/1.1\r\nHo")
            refused = []
            for _ in range(40):  # beyond its share: refused at once, so the service never fills up
                with connect(service.port) as extra:
                    refused.append(status_of(read_all(extra)))
            assert refused == [429] * 40
            started = time.monotonic()
            with connect(service.port, source="127.0.0.2") as fresh:  # another address
                fresh.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = read_all(fresh)
            took = time.monotonic() - started
            print(f"20 held and 40 refused from one client: a fresh client's /healthz in {took:.2f} s")
            assert status_of(answer) == 200 and took < 1
        finally:
            for sock in held:
                sock.close()


def test_the_trusted_proxys_connections_are_not_capped():
    env = {"CONNECTIONS_PER_CLIENT": "5", "TRUST_PROXY": "127.0.0.1"}
    with running(env) as service:
        held = [connect(service.port) for _ in range(10)]  # all from the proxy's address
        try:
            for sock in held:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert [status_of(read_all(sock)) for sock in held] == [200] * 10
        finally:
            for sock in held:
                sock.close()


# --- Framing and bodies ---

def test_http_1_0_with_content_length_and_chunked_is_refused_and_closed():
    smuggled = b"GET /healthz?smuggled HTTP/1.0\r\n\r\n"
    ambiguous = (b"POST /logout HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled)
    with running() as service, connect(service.port) as sock:
        sock.sendall(ambiguous)
        answer = read_all(sock)
        assert status_of(answer) == 400 and answer.count(b"HTTP/1.") == 1, answer
        assert not any("smuggled" in line or "POST /logout" in line for line in service.lines)


def test_a_declared_body_over_the_cap_is_refused_before_it_is_read():
    with running() as service, connect(service.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000\r\n\r\n")  # and not a byte of it
        answer = read_all(sock)
        assert status_of(answer) == 413 and b'"error"' in answer and b"application/json" in answer, answer


def test_large_unfinished_bodies_cost_no_disk_and_little_memory(tmp_path):
    def rss_kib(pid):
        with open(f"/proc/{pid}/status") as status:
            return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])

    with running({"TMPDIR": str(tmp_path), "REQUEST_TIMEOUT": "30"}) as service:
        before = rss_kib(service.pid)
        big, full = [], []
        try:
            for _ in range(30):  # 1 MB declared, 600 kB sent, never finished: refused at the headers
                sock = connect(service.port)
                sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000000\r\n\r\n")
                with contextlib.suppress(OSError):  # the service may close before we are done
                    sock.sendall(b" " * 600_000)
                big.append(sock)
            for _ in range(30):  # within the cap, unfinished: held in memory, 16 kB each at most
                sock = connect(service.port)
                sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 16384\r\n\r\n" + b" " * 16000)
                full.append(sock)
            time.sleep(0.5)
            grown = rss_kib(service.pid) - before
            print(f"30 refused 1 MB bodies and 30 unfinished 16 kB ones: RSS +{grown} KiB, "
                  f"files in TMPDIR: {os.listdir(tmp_path)}")
            assert os.listdir(tmp_path) == []  # nothing spilled to disk (tmpfs in a container: RAM)
            assert grown < 30 * 16 + 8 * 1024  # the held bodies, plus allocator slack
            assert all(status_of(read_all(sock)) == 413 for sock in big)
        finally:
            for sock in big + full:
                sock.close()


# --- A login flood from one client ---

def test_a_login_flood_from_one_client_is_refused_with_429_and_retry_after():
    with running({"LOGIN_RATE_LIMIT": "5"}) as service:
        answers = [Client("127.0.0.1", service.port).post("/", {"name": f"bot{n}"}) for n in range(8)]
        assert [a.status for a in answers] == [200] * 5 + [429] * 3
        refused = answers[-1]
        headers = {k.lower(): v for k, v in refused.headers}
        assert int(headers["retry-after"]) >= 1 and "error" in refused.json()
        other = Client("127.0.0.1", service.port, source="127.0.0.2")  # another address is not held back
        assert other.post("/", {"name": "Ann"}).status == 200


def test_login_rate_limit_0_turns_the_limit_off():
    with running({"LOGIN_RATE_LIMIT": "0"}) as service:
        client = Client("127.0.0.1", service.port)
        assert all(client.post("/", {"name": f"n{n}"}).status == 200 for n in range(80))


def test_a_full_memory_store_ends_the_session_nearest_its_end_instead_of_refusing_logins():
    with running({"SESSION_MEMORY_MAX_SESSIONS": "3", "LOGIN_RATE_LIMIT": "0"}) as service:
        users = [Client("127.0.0.1", service.port) for _ in range(4)]
        for n, user in enumerate(users[:3]):
            assert user.post("/", {"name": f"user{n}"}).status == 200
            time.sleep(0.01)  # user0's session expires first
        assert users[1].get("/name").status == 200  # used: not extended yet (lazy), still second in line
        assert users[3].post("/", {"name": "newcomer"}).status == 200  # full: room made, not a 503
        assert users[0].get("/name").status == 404  # the one nearest its end was ended
        assert [u.get("/name").status for u in users[1:]] == [200, 200, 200]
        assert users[1].post("/", {"name": "user1"}).status == 200  # a re-login always works


# --- Startup checks that keep the README's promises ---

@pytest.mark.parametrize("query", ["w=0", "replicaSet=rs0&w=1"])
def test_unacknowledged_writes_are_refused_at_startup(wire_server, query):
    service = Child([sys.executable, os.path.join(ROOT, "service.py")],
                    env={"PORT": "0", "MONGO_URL": f"{wire_server.url}db?{query}"},
                    ready=r"service.py: MONGO_URL", timeout=20)
    assert service.proc.wait(20) == 2
    assert "majority" in service.log(), service.log()


def test_every_weak_secret_is_warned_about_by_position_and_never_echoed():
    strong = "k" * 43
    with running({"SESSION_SECRET": f"{strong},weak-one,{strong}"}) as service:
        warning = service.wait_for(r"WARNING .*SESSION_SECRET", timeout=5)
        assert warning is not None and "secret 2 of 3" in warning, service.log()
        assert "weak-one" not in service.log() and strong not in service.log()


def test_one_thread_with_mongodb_is_warned_about(wire_server):
    with running({"MONGO_URL": wire_server.url + "db", "THREADS": "1"}) as service:
        assert service.wait_for(r"WARNING .*THREADS=1", timeout=5) is not None, service.log()


def test_store_warnings_are_summarised_not_one_per_request():
    with start_wire_server() as wire:  # its own: this test kills it
        with running({"MONGO_URL": wire.url + "db?timeoutMS=500", "LOGIN_RATE_LIMIT": "0"}) as service:
            user = Client("127.0.0.1", service.port)
            assert user.post("/", {"name": "Ann"}).status == 200
            wire.kill()
            answers = []

            def hammer(_):
                for _ in range(15):
                    answers.append(Client("127.0.0.1", service.port).get(
                        "/name", headers={"Cookie": "; ".join(f"{k}={v}" for k, v in user.jar.items())}).status)
            threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            warnings = [line for line in service.lines if "WARNING" in line and "store" in line]
            print(f"{len(answers)} requests while the store was down: {len(warnings)} warning lines")
            assert answers.count(503) == 60
            assert 1 <= len(warnings) <= 5, warnings  # one at once, then one per interval with a count


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address():
    import service
    limit = service.LoginLimit(1)
    assert limit.wait("::ffff:1.2.3.4") == 0 and limit.wait("1.2.3.4") > 0  # one client
    assert limit.wait("::ffff:5.6.7.8") == 0  # another client, not the same /64
