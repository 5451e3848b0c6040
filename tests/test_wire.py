"""The service against MongoDB's wire protocol over TCP: the seed flow,
outages, durability, concurrency and shutdown.

The database is tests/support/wireserver.py (mongomock behind mockupdb; not MongoDB,
see its docstring for the gaps): `$set` of a date, compare-and-set updates and
the TTL index behave as the driver expects, and with --data it survives a
restart on the same port, which the outage test needs.
"""

import datetime
import http.client
import json
import signal
import threading
import time
import uuid

import pymongo
import pytest

from support import realhttp
import sessions
from support.basics import run_threads
from support.realhttp import user_of
from support.wireserver import start_wire_server

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
SECRET = "wire-secret"


@pytest.fixture
def wire():
    # A server of its own, not conftest's shared one: the tests that ask for it make it hang.
    server = start_wire_server()
    yield server
    server.kill()


@pytest.fixture
def seed_url(wire_server):
    """A database of this test's own on conftest's shared wire server."""
    return wire_server.url + "seed" + uuid.uuid4().hex[:12]


@pytest.fixture
def db(seed_url):
    client = pymongo.MongoClient(seed_url, serverSelectionTimeoutMS=5000)
    yield client.get_default_database().sessions
    client.close()


def start_service(url, **env):
    # Many logins from one address here: the login limit has its own tests (test_abuse.py).
    return realhttp.start_service({"MONGO_URL": url, "SESSION_SECRET": SECRET, "LOGIN_RATE_LIMIT": "0", **env})


@pytest.fixture
def service(seed_url):
    process = start_service(seed_url)
    yield process
    process.kill()


# --- 1. the seed flow over the wire ---

def test_the_seed_flow_stores_connect_mongos_document(service, db):
    user = user_of(service)
    assert user.post("/", {"name": "Alice"}).json() == {"name": "Alice"}
    [doc] = db.find()
    assert list(doc) == ["_id", "expires", "session", "owner", "createdAt", "lastModified"]
    assert isinstance(doc["expires"], datetime.datetime) and isinstance(doc["session"], str)
    data = json.loads(doc["session"])
    assert data["user"] == {"name": "Alice", "isLoggedIn": True}
    assert set(data["cookie"]) == {"originalMaxAge", "expires", "secure", "httpOnly", "path", "sameSite"}
    assert user.get("/name").json() == {"name": "Alice"}
    assert user.post("/logout").status == 200
    assert user.get("/name").status == 404
    assert db.count_documents({}) == 0


def test_startup_ensures_the_ttl_index_idempotently(service, seed_url, db):
    ttl = [index for index in db.list_indexes() if dict(index["key"]) == {"expires": 1}]
    assert len(ttl) == 1 and ttl[0]["expireAfterSeconds"] == 0
    again = start_service(seed_url)  # a second start finds the index there
    again.stop()
    assert len([i for i in db.list_indexes() if dict(i["key"]) == {"expires": 1}]) == 1


def test_the_database_comes_from_the_url_path_and_the_collection_from_the_env(wire_server):
    client = pymongo.MongoClient(wire_server.url)
    process = start_service(wire_server.url + "wire_app", SESSION_COLLECTION="web_sessions")
    try:
        user_of(process).post("/", {"name": "Bo"})
        assert client.wire_app.web_sessions.count_documents({}) == 1
    finally:
        process.kill()
        client.close()


# --- 2. an outage: 503 within the timeout, then recovery by itself ---

def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_an_outage_is_503_and_the_service_recovers_by_itself(tmp_path):
    data = str(tmp_path / "outage.bson")
    wire = start_wire_server(data=data)  # its own server: stopped, then restarted on its data file
    port, service = wire.port, None
    try:
        service = start_service(wire.url + "seed?timeoutMS=2000")  # the configured bound: 2 s
        user = user_of(service)
        assert user.post("/", {"name": "Before"}).status == 200
        wire.stop()  # the database is gone: connections are refused

        for call in (lambda: user.post("/", {"name": "During"}), lambda: user.get("/name"),
                     lambda: user_of(service).get("/readyz")):
            response, seconds = timed(call)
            assert response.status == 503 and response.json()["error"]
            assert seconds < 2 + 1
        assert user_of(service).get("/healthz").status == 200
        assert service.running()  # still up

        wire = start_wire_server(port=port, data=data)  # back, same port, same data
        deadline, recovered = time.monotonic() + 5, False
        while time.monotonic() < deadline and not recovered:
            recovered = user.get("/name").status == 200
            time.sleep(0.1)
        assert recovered, "the service did not recover within 5 s"
        assert user.get("/name").json() == {"name": "Before"}  # stored before the outage, valid again
        assert user_of(service).get("/readyz").status == 200
        assert SECRET not in service.log() and user.jar["example.sid"] not in service.log()
    finally:
        if service:
            service.kill()
        wire.kill()


def test_a_hung_database_is_503_within_the_timeout(wire):
    service = start_service(wire.url + "seed?timeoutMS=1500")
    try:
        user = user_of(service)
        user.post("/", {"name": "Hang"})
        wire.set_fault("hang")
        response, seconds = timed(lambda: user.get("/name"))
        assert response.status == 503 and seconds < 1.5 + 1
        wire.set_fault("off")
        deadline = time.monotonic() + 5
        while user.get("/name").status != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert user.get("/name").json() == {"name": "Hang"}
    finally:
        service.kill()


# --- 3. a 2xx means durable ---

def test_every_acknowledged_login_survives_kill_9(seed_url):
    service = None
    acknowledged, lock, stop = [], threading.Lock(), threading.Event()

    def burst(n):
        user = user_of(service)
        for i in range(200):
            if stop.is_set():
                return
            name = f"user-{n}-{i}"
            try:
                response = user.post("/", {"name": name})
            except (OSError, http.client.HTTPException):
                return  # the service died under us: this login was never acknowledged
            if response.status == 200:
                with lock:
                    acknowledged.append((name, dict(user.jar)))
                user.jar.clear()

    try:
        service = start_service(seed_url)
        threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        service.send(signal.SIGKILL)  # mid-burst, no goodbye
        stop.set()
        for t in threads:
            t.join(30)
        service.kill()
        assert len(acknowledged) >= 40

        service = start_service(seed_url)
        reader = user_of(service)
        for name, jar in acknowledged:
            reader.jar = dict(jar)
            assert reader.get("/name").json() == {"name": name}
    finally:
        if service:
            service.kill()


# --- 4. no cross-talk under load ---

def test_32_concurrent_clients_each_see_only_their_own_session(service):
    problems, rounds = [], 4

    def client_loop(n):
        user = user_of(service)
        for r in range(rounds):
            name = f"client-{n}-round-{r}"
            steps = [user.post("/", {"name": name}), user.get("/name"), user.post("/logout"), user.get("/name")]
            statuses = [s.status for s in steps]
            if statuses != [200, 200, 200, 404] or steps[1].json() != {"name": name}:
                problems.append((name, statuses, steps[1].body))

    run_threads(client_loop, range(32), timeout=90)
    assert problems == []


# --- 5. no lost updates ---

@pytest.fixture
def interface(db):
    return sessions.SessionInterface(sessions.MongoStore(db), sessions.Options(secrets=(SECRET,)))


@pytest.fixture
def cookie(interface):
    session = interface.open_session(None)
    session["user"] = {"name": "Ann", "isLoggedIn": True}
    return interface.save_session(session).split(";")[0]


def test_two_requests_changing_different_keys_both_keep_their_change(interface, cookie):
    first, second = interface.open_session(cookie), interface.open_session(cookie)  # both load the same
    first["theme"] = "dark"
    second["cart"] = ["apples"]
    interface.save_session(first)
    interface.save_session(second)  # its compare-and-set fails, it re-reads and merges
    final = interface.open_session(cookie)
    assert final == {"user": {"name": "Ann", "isLoggedIn": True}, "theme": "dark", "cart": ["apples"]}


def test_a_deleted_key_stays_deleted_through_a_merge(interface, cookie):
    first, second = interface.open_session(cookie), interface.open_session(cookie)
    del first["user"]
    second["cart"] = []
    interface.save_session(first)
    interface.save_session(second)
    assert interface.open_session(cookie) == {"cart": []}


def test_threads_changing_their_own_keys_lose_nothing(interface, cookie):
    barrier, errors = threading.Barrier(8), []

    def worker(n):
        try:
            for i in range(10):
                session = interface.open_session(cookie)
                barrier.wait(10)  # everyone has loaded the same version
                session[f"key-{n}"] = i
                interface.save_session(session)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_threads(worker, range(8))
    assert errors == []
    final = interface.open_session(cookie)
    assert {k: v for k, v in final.items() if k.startswith("key-")} == {f"key-{n}": 9 for n in range(8)}
    assert final["user"] == {"name": "Ann", "isLoggedIn": True}


def test_writes_to_the_same_key_end_in_one_of_the_values(interface, cookie, db):
    loaded = [interface.open_session(cookie) for _ in range(6)]
    for n, session in enumerate(loaded):
        session["colour"] = f"colour-{n}"
    run_threads(interface.save_session, loaded, timeout=30)
    [doc] = db.find()
    assert json.loads(doc["session"])["colour"] in {f"colour-{n}" for n in range(6)}


def test_a_change_after_a_concurrent_logout_does_not_bring_the_session_back(interface, cookie, db):
    slow = interface.open_session(cookie)
    logout = interface.open_session(cookie)
    logout.destroy()
    interface.save_session(logout)
    slow["cart"] = ["late"]
    with pytest.raises(sessions.SessionConflict):
        interface.save_session(slow)
    assert db.count_documents({}) == 0


# --- 6. shutdown ---

def test_sigterm_lets_an_in_flight_request_finish(wire):
    service = start_service(wire.url + "seed?timeoutMS=3000")
    try:
        user = user_of(service)
        user.post("/", {"name": "Slow"})
        wire.set_fault("hang")  # the next store read hangs: the request is in flight
        result = {}
        reader = threading.Thread(target=lambda: result.update(r=user.get("/name")))
        reader.start()
        time.sleep(1)  # the request reaches the server and waits on the hung store (timeoutMS=3000)
        service.send(signal.SIGTERM)
        reader.join(15)
        assert result["r"].status == 503  # answered in full (the store timed out), not cut off
        assert service.proc.wait(15) == 0
        assert "Traceback" not in service.log()
    finally:
        wire.set_fault("off")
        service.kill()
