"""service.GuardedStore: a bound on threads waiting on the store, and a circuit breaker."""

import threading

import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure

import service
import sessions
from support.basics import Clock, run_threads


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
    return service.GuardedStore(store, slots=1, clock=clock)


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


def test_while_a_call_hangs_others_fail_at_once_and_only_after_stalled_after(store, clock):
    guarded = service.GuardedStore(store, slots=1, clock=clock)
    store.release = threading.Event()
    hung = threading.Thread(target=guarded.ping)
    hung.start()
    try:
        while store.calls == 0:  # the hung call holds the only slot
            threading.Event().wait(0.01)
        clock.advance(guarded.stalled_after + 0.01)
        with pytest.raises(sessions.StoreUnavailable, match="hangs"):
            guarded.ping()
        assert store.calls == 1
    finally:
        store.release.set()
        hung.join(10)


def test_a_busy_but_healthy_store_makes_callers_wait_for_a_slot_not_fail(store):
    guarded = service.GuardedStore(store, slots=2, clock=Clock())  # the clock stands still: nothing ever stalls
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
    guarded = service.GuardedStore(store, slots=3, clock=Clock())  # the clock stands still: nothing stalls
    run_threads(lambda _: results.append(guarded.ping() is None), range(12))
    assert results == [True] * 12 and store.most == 3 and store.running == 0


def test_a_caller_already_waiting_for_a_slot_fails_once_the_call_ahead_has_hung(store):
    class Watched(Clock):  # remembers which threads read it
        def __init__(self):
            super().__init__()
            self.readers = set()

        def __call__(self):
            self.readers.add(threading.get_ident())
            return super().__call__()
    clock = Watched()
    guarded = service.GuardedStore(store, slots=1, clock=clock)
    store.release, outcome = threading.Event(), []
    hung = threading.Thread(target=guarded.ping)
    hung.start()

    def waiter():
        try:
            guarded.ping()
            outcome.append("answered")
        except sessions.StoreUnavailable as exc:
            outcome.append(str(exc))
    try:
        while store.calls == 0:  # the hung call holds the only slot
            threading.Event().wait(0.01)
        waiting = threading.Thread(target=waiter)
        waiting.start()
        for _ in range(500):  # until the waiter has looked at how long the call ahead has run, and waits on
            if waiting.ident in clock.readers:
                break
            threading.Event().wait(0.01)
        assert waiting.ident in clock.readers and outcome == []  # not hung for stalled_after yet: it waits its turn
        clock.advance(guarded.stalled_after + 0.01)
        waiting.join(5)
        assert outcome == ["every store slot waits on a call that hangs"] and store.calls == 1
    finally:
        store.release.set()
        hung.join(10)


def test_a_call_that_has_finished_is_never_taken_for_one_that_hangs(store, clock):
    guarded = service.GuardedStore(store, slots=1, clock=clock)
    guarded.ping()  # finished long ago, by the time the others come
    clock.advance(guarded.stalled_after * 10)
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
