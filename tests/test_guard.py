"""service.GuardedStore: a bound on threads waiting on the store, and a circuit breaker."""

import threading
import time

import pymongo.errors
import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure

import service
import sessions
from support.basics import T0, run_threads
from support.mongo import STORE_ERRORS


class ScriptedStore:
    """A store whose ping does what the test says: answer, raise, or block until released."""

    def __init__(self):
        self.pings, self.fail, self.release = [], None, None

    @property
    def calls(self):
        return len(self.pings)

    def ping(self):
        self.pings.append(1)  # list.append is atomic; += on an int is not
        if self.release is not None:
            self.release.wait(10)
        if self.fail is not None:  # as MongoStore raises it: StoreUnavailable, the driver's error its cause
            raise sessions.StoreUnavailable(type(self.fail).__name__) from self.fail


@pytest.fixture
def store():
    return ScriptedStore()


@pytest.fixture
def guarded(store, clock):
    return service.GuardedStore(store, slots=1, timeout=5, clock=clock)


def test_a_store_error_becomes_store_unavailable(guarded, store):
    store.fail = OperationFailure("not primary")
    with pytest.raises(sessions.StoreUnavailable):
        guarded.ping()


@pytest.mark.parametrize("error", [AutoReconnect("connection refused"), NetworkTimeout("timed out")])
def test_after_a_connection_failure_requests_fail_fast_without_touching_the_store(guarded, store, error):
    store.fail = error
    with pytest.raises(sessions.StoreUnavailable):
        guarded.ping()
    store.fail = None  # back already, but nobody may know before the next probe
    for _ in range(5):
        with pytest.raises(sessions.StoreUnavailable):
            guarded.ping()
    assert store.calls == 1


def test_one_probe_after_retry_after_and_its_success_closes_the_breaker(guarded, store, clock):
    store.fail = AutoReconnect("down")
    with pytest.raises(sessions.StoreUnavailable):
        guarded.ping()
    clock.advance(guarded.retry_after)
    with pytest.raises(sessions.StoreUnavailable):  # the probe, still failing: open again
        guarded.ping()
    assert store.calls == 2
    clock.advance(guarded.retry_after)
    store.fail = None
    guarded.ping()  # the probe succeeds
    guarded.ping()  # closed: every call goes through again
    assert store.calls == 4


def test_an_error_that_is_not_about_the_connection_leaves_the_breaker_closed(guarded, store):
    store.fail = OperationFailure("bad query")
    with pytest.raises(sessions.StoreUnavailable):
        guarded.ping()
    store.fail = None
    guarded.ping()
    assert store.calls == 2


def test_while_a_call_hangs_a_caller_waits_for_a_slot_only_as_long_as_the_timeout(store):
    guarded = service.GuardedStore(store, slots=1, timeout=0.3)
    store.release = threading.Event()
    hung = threading.Thread(target=guarded.ping)
    hung.start()
    try:
        while store.calls == 0:  # the hung call holds the only slot
            threading.Event().wait(0.01)
        started = time.monotonic()
        with pytest.raises(service.Unavailable, match="no store slot") as caught:
            guarded.ping()
        assert caught.value.cause == "slot_timeout" and 0.3 <= time.monotonic() - started < 2
        assert store.calls == 1 and guarded.down is False  # waiting is not failing: the breaker stays closed
    finally:
        store.release.set()
        hung.join(10)


def test_a_request_that_waited_past_the_timeout_in_the_queue_is_shed_without_a_store_call(store):
    guarded = service.GuardedStore(store, slots=1, timeout=5)
    token = service.REQUEST_ARRIVED.set(time.monotonic() - 5.01)  # it arrived 5 s ago
    try:
        with pytest.raises(service.Unavailable) as caught:
            guarded.ping()
        assert caught.value.cause == "queue_timeout" and store.calls == 0
    finally:
        service.REQUEST_ARRIVED.reset(token)
    guarded.ping()  # a request that just arrived is served
    assert store.calls == 1


def test_latency_alone_never_opens_the_breaker(store):
    class Slow(type(store)):
        def ping(self):
            super().ping()
            threading.Event().wait(0.05)  # slow, but within the timeout
    slow = Slow()
    guarded = service.GuardedStore(slow, slots=2, timeout=5)
    results = []
    run_threads(lambda _: results.append(guarded.ping() is None), range(12))
    assert results == [True] * 12 and guarded.down is False and slow.calls == 12


def test_a_busy_but_healthy_store_makes_callers_wait_for_a_slot_not_fail(store):
    guarded = service.GuardedStore(store, slots=2, timeout=5)
    results = []
    run_threads(lambda _: results.append(guarded.ping() is None), range(16))
    assert results == [True] * 16 and store.calls == 16


def test_at_most_slots_calls_wait_on_the_store_at_once():
    class Counting:
        def __init__(self):
            self.running, self.most, self.lock, self.full = 0, 0, threading.Lock(), threading.Event()

        def ping(self):
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
                if self.running == 3:
                    self.full.set()
            self.full.wait(10)  # the first three wait for each other: every slot is held at once
            threading.Event().wait(0.05)  # and a while longer, for the others to pile up behind them
            with self.lock:
                self.running -= 1
    store, results = Counting(), []
    guarded = service.GuardedStore(store, slots=3, timeout=5)
    run_threads(lambda _: results.append(guarded.ping() is None), range(12))
    assert results == [True] * 12 and store.most == 3 and store.running == 0


def test_a_call_that_has_finished_is_never_taken_for_one_that_hangs(store, clock):
    guarded = service.GuardedStore(store, slots=1, timeout=5, clock=clock)
    guarded.ping()  # finished long ago, by the time the others come
    clock.advance(100)
    store.release, answers = threading.Event(), []
    holding = threading.Thread(target=lambda: answers.append(guarded.ping()))
    holding.start()
    try:
        while store.calls == 1:  # a call that has just begun holds the only slot
            threading.Event().wait(0.01)
        waiting = threading.Thread(target=lambda: answers.append(guarded.ping()))
        waiting.start()
        threading.Event().wait(0.1)
        store.release.set()
        waiting.join(5)
        assert answers == [None, None] and store.calls == 3  # it waited for the slot: nothing hangs
    finally:
        store.release.set()
        holding.join(10)


# --- the breaker per error kind, on a store's load; probes and slots ---

class FlakyStore:
    """A store whose next calls fail with the queued errors, then succeed; it counts calls."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0

    def load(self, sid, now):
        self.calls += 1
        if self.errors:  # as MongoStore raises it: StoreUnavailable, the driver's error its cause
            error = self.errors.pop(0)
            raise sessions.StoreUnavailable(type(error).__name__) from error
        return sessions.Record("{}", now + 60)

    def ping(self):
        return self.load("x", 0)


def test_the_guarded_store_passes_calls_through(clock):
    guarded = service.GuardedStore(sessions.MemoryStore(clock=clock), slots=2, timeout=5, clock=clock)
    guarded.insert("a", sessions.Record("{}", T0 + 60))
    assert guarded.load("a", T0)[:2] == ("{}", T0 + 60)
    assert guarded.compare_and_set("a", "{}", sessions.Record("1", T0 + 60), T0) is True
    assert guarded.touch("a", T0 + 90, T0) is True
    guarded.delete("a")
    assert guarded.load("a", T0) is None


def test_the_guarded_stores_defaults():
    guarded = service.GuardedStore(sessions.MemoryStore(), slots=1, timeout=5)
    assert (guarded.timeout, guarded.retry_after) == (5, 1.0)


@pytest.mark.parametrize("error", ["AutoReconnect", "ServerSelectionTimeoutError", "NetworkTimeout",
                                   "ExecutionTimeout"])
def test_a_connection_failure_or_timeout_opens_the_breaker_until_a_probe_succeeds(clock, error):
    store = FlakyStore(STORE_ERRORS[error](), STORE_ERRORS[error]())
    guarded = service.GuardedStore(store, slots=2, timeout=5, retry_after=1.0, clock=clock)
    with pytest.raises(sessions.StoreUnavailable, match=error) as caught:
        guarded.load("a", T0)
    assert isinstance(caught.value.__cause__, pymongo.errors.PyMongoError)
    with pytest.raises(sessions.StoreUnavailable, match="a probe tries it again shortly"):
        guarded.load("a", T0)  # open: fails fast...
    assert store.calls == 1  # ...without asking the store
    clock.advance(0.999)
    with pytest.raises(sessions.StoreUnavailable):
        guarded.load("a", T0)
    assert store.calls == 1
    clock.advance(0.001)  # retry_after has passed: one probe goes through, and fails
    with pytest.raises(sessions.StoreUnavailable, match=error):
        guarded.load("a", T0)
    assert store.calls == 2
    with pytest.raises(sessions.StoreUnavailable):  # open again, for another retry_after
        guarded.load("a", T0)
    clock.advance(1.0)
    assert guarded.load("a", T0)[:2] == ("{}", T0 + 60)  # the probe succeeds: closed
    assert guarded.ping()[:2] == ("{}", 60) and store.calls == 4


@pytest.mark.parametrize("error", ["OperationFailure", "WriteConcernError"])
def test_an_error_that_is_no_outage_fails_only_its_own_request(clock, error):
    store = FlakyStore(STORE_ERRORS[error]())
    guarded = service.GuardedStore(store, slots=2, timeout=5, clock=clock)
    with pytest.raises(sessions.StoreUnavailable, match=error):
        guarded.load("a", T0)
    assert guarded.load("a", T0)[:2] == ("{}", T0 + 60)  # the breaker stayed closed
    assert store.calls == 2


def test_only_one_probe_at_a_time(clock):
    import threading
    entered, release = threading.Event(), threading.Event()

    class SlowStore(FlakyStore):
        def load(self, sid, now):
            if self.calls == 1:  # the probe: hangs until released
                self.calls += 1
                entered.set()
                release.wait(10)
                return ("{}", 1.0)
            return super().load(sid, now)

    store = SlowStore(STORE_ERRORS["AutoReconnect"]())
    guarded = service.GuardedStore(store, slots=4, timeout=5, retry_after=1.0, clock=clock)
    with pytest.raises(sessions.StoreUnavailable):
        guarded.load("a", T0)
    clock.advance(1.0)
    results = []
    probe = threading.Thread(target=lambda: results.append(guarded.load("a", T0)))
    probe.start()
    assert entered.wait(10)
    with pytest.raises(sessions.StoreUnavailable, match="a probe tries it again shortly"):
        guarded.load("a", T0)  # a second request while the probe is out: fails fast
    release.set()
    probe.join(10)
    assert results == [("{}", 1.0)] and store.calls == 2
    assert guarded.load("a", T0)[:2] == ("{}", T0 + 60)  # closed by the probe's success


@pytest.mark.parametrize("busy_for", [0, 0.5])  # however long the call ahead has run by the clock
def test_a_request_waits_for_a_slot_while_its_time_lasts(clock, busy_for):
    import threading
    entered, release = threading.Event(), threading.Event()

    class BusyStore:
        def load(self, sid, now):
            if sid == "busy":
                entered.set()
                release.wait(10)
            return (sid, 1.0)

    guarded = service.GuardedStore(BusyStore(), slots=1, timeout=5, clock=clock)
    busy = threading.Thread(target=guarded.load, args=("busy", T0))
    busy.start()
    assert entered.wait(10)
    clock.advance(busy_for)
    threading.Timer(0.1, release.set).start()  # the busy call ends soon
    assert guarded.load("b", T0) == ("b", 1.0)
    busy.join(10)


def test_after_the_breaker_closes_requests_run_side_by_side_again(clock):
    import threading
    entered, release = threading.Event(), threading.Event()

    class Store(FlakyStore):
        def load(self, sid, now):
            if sid == "slow":
                entered.set()
                release.wait(10)
            return super().load(sid, now)

    guarded = service.GuardedStore(Store(STORE_ERRORS["AutoReconnect"]()), slots=4, timeout=5, retry_after=1.0,
                                   clock=clock)
    with pytest.raises(sessions.StoreUnavailable):
        guarded.load("a", T0)
    clock.advance(1.0)
    guarded.load("a", T0)  # the probe succeeds: closed
    slow = threading.Thread(target=guarded.load, args=("slow", T0))
    slow.start()
    try:
        assert entered.wait(10)
        assert guarded.load("b", T0)[:2] == ("{}", T0 + 60)  # not treated as a second probe
    finally:
        release.set()
        slow.join(10)
