"""Store work per request, a correctness contract: what each kind of request may ask of the store.

A request without a valid cookie never reaches the store; a logged-in read
inside the touch interval is one read and nothing else; a touch is one
expiry-only write at most once per interval; login stores the new session
before it deletes the old one. Asserted exactly, in order, on the counting
collection (in-process, webtest), and cross-checked over the wire: the same
requests on a MongoClient to tests/support/wireserver.py, counted by pymongo command
monitoring (what the driver sent) and by the wire server's testCounters
(what arrived). Handshake and monitoring commands are not counted.
"""

import pymongo
import pytest
import webtest
from pymongo import monitoring

import service
import sessions
from support import wireserver
from support.basics import SECRET, Clock, cookie_value

pytestmark = pytest.mark.timeout(120)

NOT_COUNTED = {"hello", "isMaster", "ismaster", "ping", "endSessions"}  # any driver sends these, whatever the app does
TOUCH_AFTER = sessions.Options(secrets=(SECRET,)).touch_after  # seconds: the default touch interval


# --- The requests, each with what it needs stored first ---

def wrong_signature(cookie):
    return cookie[:-1] + ("A" if cookie[-1] != "A" else "B")


def no_signature(cookie):
    return cookie.rpartition(".")[0]


def garbage(cookie):
    return cookie.partition("=")[0] + "=%%garbage%%"


def touch_due(app, clock):
    cookie = login(app)
    clock.advance(TOUCH_AFTER + 1)  # seconds: the lazy touch is due
    return "GET", "/name", cookie


def login(app):
    response = app.post_json("/", {"name": "Alice"})
    app.cookiejar.clear()  # the measured request sends exactly the cookie its case names
    return cookie_value(response.headers["Set-Cookie"])


# kind: (limit, prepare(app, clock) -> (method, path, cookie), collection calls in order, commands at the wire)
CASES = {
    "GET /healthz": ("0", lambda app, clock: ("GET", "/healthz", None), [], {}),
    "GET /name without a cookie": ("0", lambda app, clock: ("GET", "/name", None), [], {}),
    "GET /name, wrong signature": ("0", lambda app, clock: ("GET", "/name", wrong_signature(login(app))), [], {}),
    "GET /name, no signature": ("0", lambda app, clock: ("GET", "/name", no_signature(login(app))), [], {}),
    "GET /name, garbage cookie": ("0", lambda app, clock: ("GET", "/name", garbage(login(app))), [], {}),
    "GET /name inside the touch interval": (
        "1r 0w", lambda app, clock: ("GET", "/name", login(app)), ["find_one"], {"find": 1}),
    "GET /name with the touch due": (
        "1r 1w", touch_due, ["find_one", "update_one"], {"find": 1, "update": 1}),
    "POST / without a cookie": ("0r 1w", lambda app, clock: ("POST", "/", None), ["insert_one"], {"insert": 1}),
    "POST / with a session cookie": (  # the new session is stored before the old one is deleted
        "<=1r 1w 1d", lambda app, clock: ("POST", "/", login(app)), ["find_one", "insert_one", "delete_one"],
        {"find": 1, "insert": 1, "delete": 1}),
    "POST /logout": ("<=1r <=1d", lambda app, clock: ("POST", "/logout", login(app)), ["find_one", "delete_one"],
                     {"find": 1, "delete": 1}),
}
LIMITS = {  # limit -> check(reads, writes, deletes)
    "0": lambda r, w, d: r == w == d == 0,
    "1r 0w": lambda r, w, d: (r, w, d) == (1, 0, 0),
    "1r 1w": lambda r, w, d: (r, w, d) == (1, 1, 0),
    "0r 1w": lambda r, w, d: (r, w, d) == (0, 1, 0),
    "<=1r 1w 1d": lambda r, w, d: r <= 1 and (w, d) == (1, 1),
    "<=1r <=1d": lambda r, w, d: r <= 1 and w == 0 and d <= 1,
}


def send(app, method, path, cookie):
    headers = {"Cookie": cookie} if cookie else {}
    if method == "POST" and path == "/":
        return app.post_json("/", {"name": "Alice"}, headers=headers)
    return app.request(path, method=method, headers=headers, expect_errors=True)


# --- In-process, on the counting collection ---

@pytest.mark.parametrize("kind", CASES)
def test_store_calls_per_request(kind, make_client, counted, clock):
    limit, prepare, calls, _ = CASES[kind]
    app = make_client()
    method, path, cookie = prepare(app, clock)
    counted.calls.clear()
    send(app, method, path, cookie)
    assert counted.calls == calls
    assert LIMITS[limit](counted.reads(), counted.writes(), counted.deletes())


def test_every_request_kind_answers_as_the_seed_does(make_client, clock):
    # The table above counts real requests: each answers what it should (no 500 counted as "0 store calls").
    expected = {"GET /healthz": 200, "GET /name without a cookie": 404, "GET /name, wrong signature": 404,
                "GET /name, no signature": 404, "GET /name, garbage cookie": 404,
                "GET /name inside the touch interval": 200, "GET /name with the touch due": 200,
                "POST / without a cookie": 200, "POST / with a session cookie": 200, "POST /logout": 200}
    assert set(expected) == set(CASES)
    for kind, status in expected.items():
        app = make_client()
        assert send(app, *CASES[kind][1](app, clock)).status_int == status, kind


# --- Over the wire: driver-side and server-side counts agree ---

class CommandCounter(monitoring.CommandListener):
    """pymongo command monitoring: the commands this client sent, by name."""

    def __init__(self):
        self.counts = {}

    def started(self, event):
        if event.command_name not in NOT_COUNTED:
            self.counts[event.command_name] = self.counts.get(event.command_name, 0) + 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture(scope="module")
def wire():
    # A server of its own, not conftest's shared one: testCounters counts every command the
    # server receives, so no other test's commands may reach it.
    server = wireserver.start_wire_server()
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", CASES)
def test_store_commands_on_the_wire(kind, wire):
    _, prepare, _, commands = CASES[kind]
    listener, clock = CommandCounter(), Clock()
    with pymongo.MongoClient(wire.url, event_listeners=[listener]) as client:
        store = sessions.MongoStore(client["commands"]["sessions"])
        store.ensure_indexes()
        app = webtest.TestApp(service.make_app(
            sessions.SessionInterface(store, sessions.Options(secrets=(SECRET,)), clock=clock)))
        method, path, cookie = prepare(app, clock)
        listener.counts.clear()
        wire.counters(reset=True)
        send(app, method, path, cookie)
        assert listener.counts == commands  # what the driver sent
        assert wire.counters() == commands  # what arrived


@pytest.mark.slow
def test_wire_server_counts_commands_by_name_and_resets(wire):
    wire.counters(reset=True)
    with pymongo.MongoClient(wire.url) as client:
        assert wire.counters() == {}  # handshakes are not counted
        client.db.c.insert_one({"_id": 1})
        client.db.c.find_one({"_id": 1})
        client.db.c.find_one({"_id": 2})
        client.admin.command("ping")  # monitoring: not counted
    assert wire.counters() == {"insert": 1, "find": 2}
    assert wire.counters(reset=True) == {"insert": 1, "find": 2}
    assert wire.counters() == {}
