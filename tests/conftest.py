"""Shared fixtures: a clock to step, a store that counts what it is asked, apps, one wire server.

The helpers behind them are in tests/support/."""

import mongomock
import pytest
import webtest
from hypothesis import HealthCheck, settings

# No per-example deadline: a noisy two-core machine must not turn slowness into failures.
settings.register_profile("steady", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("steady")

import service
import sessions
from support.basics import SECRET, Clock
from support.mongo import CountingCollection, DownCollection


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(scope="session")
def wire_server():
    """One wire server for every test that needs a plain MongoDB (no faults, no TTL
    sweep); each test uses a database or collection of its own.  A test that makes a
    server hang, kills or restarts it, or counts its commands starts its own and says why."""
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
        collection = counted if collection is None else collection
        store = sessions.MongoStore(collection, ensure_indexes=not isinstance(collection, DownCollection))
        counted.calls.clear()  # the indexes made at construction are no request's work
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
