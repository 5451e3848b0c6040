"""Shared fixtures: a clock to step, a store that counts what it is asked, apps."""

import os
import threading
import time

import mongomock
import pymongo.errors
import pytest
import webtest
from hypothesis import HealthCheck, settings

# No per-example deadline: a noisy two-core machine must not turn slowness into failures.
settings.register_profile("steady", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("steady")

import service
import sessions

SECRET = "test-secret"
T0 = 4_102_444_800.0  # 2100-01-01T00:00:00Z: a fixed "now", later than any real one (cookie jars use real time)


class Clock:
    """Time as a parameter: tests step it instead of sleeping."""

    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class CountingCollection:
    """A collection that records every call made to it, by method name."""

    def __init__(self, collection):
        self.collection, self.calls = collection, []

    @property
    def database(self):
        return self.collection.database

    def __getattr__(self, name):
        method = getattr(self.collection, name)

        def counted(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)
        return counted

    def reads(self):
        return sum(name.startswith("find") for name in self.calls)

    def writes(self):
        return sum(name.startswith(("insert", "update", "replace")) for name in self.calls)

    def deletes(self):
        return sum(name.startswith("delete") for name in self.calls)


class HintedCollection:
    """A mongomock collection that takes `hint` as MongoDB documents it: the query
    must use the named index, which must exist (mongomock has no `hint`)."""

    def __init__(self, collection):
        self.collection = collection

    @property
    def database(self):
        return self.collection.database

    def __getattr__(self, name):
        method = getattr(self.collection, name)

        def hinted(*args, hint=None, **kwargs):
            if hint is not None:
                keys = [list(index["key"]) for index in self.collection.index_information().values()]
                if [tuple(pair) for pair in hint] not in [[tuple(pair) for pair in key] for key in keys]:
                    raise pymongo.errors.OperationFailure("hint provided does not correspond to an existing "
                                                          "index", code=2)
            return method(*args, **kwargs)
        return hinted


class DownCollection:
    """A store that is down: every operation fails as pymongo does when no server answers."""

    class _Database:
        def command(self, *args, **kwargs):
            raise pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:9: [Errno 111] Connection refused")

    database = _Database()

    def __getattr__(self, name):
        return self.database.command


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(scope="session")
def wire_server():
    """One wire server for every test that needs a plain MongoDB (no faults, no TTL
    sweep); each test uses a database or collection of its own."""
    from support.wireserver import start_wire_server
    server = start_wire_server(ttl_monitor=0)
    yield server
    server.stop()


@pytest.fixture
def mongo():
    """The raw mongomock collection, to inspect what was stored."""
    return mongomock.MongoClient().sessions.sessions


@pytest.fixture
def counted(mongo):
    return CountingCollection(mongo)


@pytest.fixture
def make_interface(counted, clock):
    def make(collection=None, **options):
        options.setdefault("secrets", (SECRET,))
        store = sessions.MongoStore(counted if collection is None else collection, ensure_indexes=False)
        return sessions.SessionInterface(store, sessions.Options(**options), clock=clock)
    return make


@pytest.fixture
def interface(make_interface):
    return make_interface()


@pytest.fixture
def make_client(make_interface):
    def make(collection=None, https=False, **options):
        """The app as main() serves it (without the access log): https=True as if over TLS,
        or behind the proxy TRUST_PROXY names (waitress then sets wsgi.url_scheme)."""
        app = service.outermost(service.make_app(make_interface(collection, **options)), access_log=False)
        return webtest.TestApp(app, extra_environ={"wsgi.url_scheme": "https"} if https else {})
    return make


@pytest.fixture
def client(make_client):
    return make_client()


def cookie_value(set_cookie):
    """'name=value; Path=/; ...' -> 'name=value', the part a browser sends back."""
    return set_cookie.split(";")[0]


def skip_unless(reason):
    """Skip when a tool is missing (reason is not None) - except under CI,
    which installs every tool, so there a missing one is a failure."""
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def run_threads(target, arguments, timeout=60):
    """Run target(argument) in one thread per argument and wait for all (bounded)."""
    threads = [threading.Thread(target=target, args=(a,)) for a in arguments]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running after the timeout"
