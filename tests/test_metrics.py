"""The management port: GET /healthz, /readyz and /metrics (Prometheus text), and
nothing else.  A scripted flow is scraped and every count checked exactly; in-process,
then over a socket with ADMIN_PORT."""

import pytest
import webtest
from prometheus_client.parser import text_string_to_metric_families

import service
import sessions
from support.basics import SECRET, T0, Clock, cookie_value
from support.mongo import DownCollection


def scrape(management):
    """{(sample name, labels as a sorted tuple): value} of a /metrics answer."""
    response = management.get("/metrics")
    assert response.content_type == "text/plain"  # Prometheus's text format
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


@pytest.fixture
def flow():
    """The service's app and its management app on one MemoryStore of at most 2 sessions, a stepped
    clock, a login limit of 3 a minute."""
    clock = Clock()
    store = sessions.MemoryStore(clock=clock, max_sessions=2)
    interface = sessions.SessionInterface(store, sessions.Options(secrets=(SECRET,)), clock=clock)
    metrics = service.Metrics(store)
    limit = service.LoginLimit(3, clock=clock)
    app = service.outermost(service.make_app(interface, limit, metrics), metrics=metrics)
    management = webtest.TestApp(service.outermost(service.management_app(store, metrics)))
    return lambda address="10.0.0.1": webtest.TestApp(app, extra_environ={"REMOTE_ADDR": address}), \
        management, clock


def test_a_scripted_flow_is_counted_exactly(flow):
    client, management, clock = flow
    ann, bob, carol = client(), client("10.0.0.2"), client("10.0.0.3")
    ann.post_json("/", {"name": "Ann"})  # created
    old = ann.cookies["example.sid"]
    ann.post_json("/", {"name": "Ann"})  # created, and regenerated: it replaced the session it came with
    bob.post_json("/", {"name": "Bob"})  # created
    clock.advance(1)  # Bob's session is now the one nearest its end
    assert bob.get("/name").json == {"name": "Bob"}
    assert client().get("/name", headers={"Cookie": f"example.sid={old}"}, status=404)  # ended: expired/gone
    ann.post_json("/", {"name": "Ann"})  # created (3rd login from 10.0.0.1), regenerated
    ann.post_json("/", {"name": "Ann"}, status=429)  # refused: rate limit
    carol.post_json("/", {"name": "Carol"})  # created: the store is full (2), Bob's session nearest its end goes
    assert bob.get("/name", status=404)  # ... which his next read sees as ended
    ann.post("/logout")  # ended: logout
    counts = scrape(management)
    assert counts[("sessions_created_total", ())] == 5
    assert counts[("sessions_regenerated_total", ())] == 2
    assert counts[("sessions_ended_total", (("reason", "expired"),))] == 2
    assert counts[("sessions_ended_total", (("reason", "logout"),))] == 1
    assert counts[("logins_refused_total", (("reason", "rate_limit"),))] == 1
    assert counts[("memory_store_sessions", ())] == 1  # Carol's
    assert counts[("memory_store_evicted_total", ())] == 1
    assert counts[("http_request_duration_seconds_count", (("route", "/"),))] == 6
    assert counts[("http_request_duration_seconds_count", (("route", "/name"),))] == 3
    assert counts[("http_request_duration_seconds_count", (("route", "/logout"),))] == 1


def test_sessions_ended_by_their_owner_are_counted(flow):
    client, management, clock = flow
    devices = [client(f"10.0.1.{n}") for n in range(2)]  # the store keeps 2
    for device in devices:
        device.post_json("/", {"name": "Ann"})
    devices[1].post_json("/logout", {"everywhere": True})  # the other one: by its owner; this one: a logout
    counts = scrape(management)
    assert counts[("sessions_ended_total", (("reason", "ended_by_owner"),))] == 1
    assert counts[("sessions_ended_total", (("reason", "logout"),))] == 1


def test_503s_are_counted_by_cause_and_conflicts_as_ended():
    metrics = service.Metrics()
    down = sessions.SessionInterface(sessions.MongoStore(DownCollection(), ensure_indexes=False),
                                     sessions.Options(secrets=(SECRET,)))
    client = webtest.TestApp(service.outermost(service.make_app(down, metrics=metrics), metrics=metrics))
    client.post_json("/", {"name": "Ann"}, status=503)
    metrics.refused(sessions.SessionConflict("ended meanwhile"))
    metrics.refused(service.Unavailable("waited", "queue_timeout"))
    management = webtest.TestApp(service.management_app(sessions.MemoryStore(), metrics))
    counts = scrape(management)
    assert counts[("store_unavailable_responses_total", (("cause", "store_error"),))] == 1
    assert counts[("store_unavailable_responses_total", (("cause", "queue_timeout"),))] == 1
    assert counts[("sessions_ended_total", (("reason", "conflict"),))] == 1


def test_store_calls_are_timed_by_operation_and_the_breaker_is_shown():
    clock = Clock()
    metrics = service.Metrics()
    guarded = service.GuardedStore(sessions.MemoryStore(clock=clock), slots=2, timeout=5, metrics=metrics)
    metrics.registry.register(service.StoreReadings(guarded))
    guarded.insert("a", sessions.Record("{}", T0 + 60))
    guarded.load("a", T0)
    guarded.load("b", T0)
    counts = scrape(webtest.TestApp(service.management_app(guarded, metrics)))
    assert counts[("store_call_duration_seconds_count", (("operation", "load"),))] == 2
    assert counts[("store_call_duration_seconds_count", (("operation", "insert"),))] == 1
    assert counts[("store_breaker_open", ())] == 0
    guarded.down = True
    assert scrape(webtest.TestApp(service.management_app(guarded, metrics)))[("store_breaker_open", ())] == 1


# --- the management port's other answers ---

@pytest.fixture
def management():
    store = sessions.MemoryStore()
    return webtest.TestApp(service.outermost(service.management_app(store, service.Metrics(store))))


def test_healthz_and_readyz_answer_on_the_management_port(management):
    assert management.get("/healthz").json == {"status": "ok"}
    assert management.get("/readyz").json == {"status": "ready"}
    assert management.head("/healthz").body == b""


def test_readyz_is_503_while_the_store_is_down():
    store = sessions.MongoStore(DownCollection(), ensure_indexes=False)
    app = webtest.TestApp(service.management_app(store, service.Metrics()))
    assert "unavailable" in app.get("/readyz", status=503).json["error"]


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/", 404), ("GET", "/name", 404), ("GET", "/sessions", 404), ("GET", "/metrics/x", 404),
    ("POST", "/metrics", 405), ("DELETE", "/healthz", 405), ("PUT", "/readyz", 405)])
def test_anything_else_is_a_json_4xx(management, method, path, status):
    response = management.request(path, method=method, expect_errors=True)
    assert response.status_int == status and "error" in response.json
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_metrics_say_nothing_about_sessions_but_counts(flow):
    client, management, _ = flow
    ann = client()
    ann.post_json("/", {"name": "Ann"}, headers={"User-Agent": "Secret-Agent/1.0"})
    text = management.get("/metrics").text
    sid = cookie_value(f"x={ann.cookies['example.sid']}")
    assert "Ann" not in text and "Secret-Agent" not in text and sid.split("=")[1][4:20] not in text


def test_readyz_on_the_management_port_probes_a_store_the_breaker_took_out():
    class Flaky(sessions.MemoryStore):
        fail = True

        def ping(self):
            if self.fail:
                import pymongo.errors
                raise sessions.StoreUnavailable("AutoReconnect") from pymongo.errors.AutoReconnect("down")
    inner = Flaky()
    guarded = service.GuardedStore(inner, slots=2, timeout=5)
    with pytest.raises(sessions.StoreUnavailable):
        guarded.ping()
    assert guarded.down  # open: only a probe may try again
    management = webtest.TestApp(service.management_app(guarded, service.Metrics()))
    assert management.get("/readyz", status=503)
    inner.fail = False  # the store is back, and no session request comes (the instance is unready)
    assert management.get("/readyz").json == {"status": "ready"}
    assert guarded.down is False  # the readiness probe closed the breaker
