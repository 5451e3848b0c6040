"""The store contract (sessions.Store), run against every store, so they cannot drift.

Every test takes a `store` built by one of STORES; to check a store of your
own (Redis, SQL), add a factory `make(request, clock) -> store` to STORES and
run this file.  The stores here: MemoryStore, MongoStore over mongomock (with
MongoDB's `hint` rule added, which mongomock lacks), and MongoStore over the
MongoDB wire protocol (tests/support/wireserver.py: a real pymongo client over TCP).

Times are epoch seconds; BSON dates keep milliseconds, so every store keeps
them to the millisecond.  The wire store's tests are marked slow (it is a server):
`-m "not slow"` leaves the in-process stores (the fast set).
"""

import inspect
import sys
import threading
import uuid

import mongomock
import pymongo
import pytest

import sessions
from support.basics import T0, Clock, run_threads
from support.mongo import HintedCollection

LIVE = T0 + 600  # an expiry 10 minutes after "now"


@pytest.fixture(scope="module")
def wire_client(wire_server):
    client = pymongo.MongoClient(wire_server.url, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


def mongomock_store(request, clock):
    return sessions.MongoStore(HintedCollection(mongomock.MongoClient().contract.sessions))


def wire_store(request, clock):
    client = request.getfixturevalue("wire_client")
    return sessions.MongoStore(client.contract["c" + uuid.uuid4().hex])  # a fresh collection per test


def memory_store(request, clock):
    return sessions.MemoryStore(clock=clock)


STORES = [memory_store, mongomock_store, pytest.param(wire_store, marks=pytest.mark.slow)]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=STORES, ids=["memory", "mongomock", "wire"])
def store(request, clock):
    return request.param(request, clock)


def R(text, expires, **fields):
    return sessions.Record(text, expires, **fields)


def kept(record):
    """What the older half of the contract is about: the text and the expiry."""
    return None if record is None else (record.text, record.expires)


def millis(timestamp):
    """What a BSON date keeps of an epoch-seconds value."""
    return sessions.to_timestamp(sessions.to_datetime(timestamp))


# --- load and insert ---

def test_an_inserted_session_loads_back(store):
    store.insert("a", R('{"user":"Ann"}', LIVE))
    assert kept(store.load("a", T0)) == ('{"user":"Ann"}', LIVE)


def test_an_unknown_id_loads_as_none(store):
    store.insert("a", R("{}", LIVE))
    assert store.load("b", T0) is None


def test_the_stored_json_comes_back_exactly(store):
    text = '{"name":"Zoë 🙂","n":1.0,"nested":{"a":[1,"x",null]}}'
    store.insert("a", R(text, LIVE))
    assert store.load("a", T0)[0] == text


def test_sessions_are_kept_apart(store):
    store.insert("a", R('"A"', LIVE))
    store.insert("b", R('"B"', LIVE + 1))
    assert kept(store.load("a", T0)) == ('"A"', LIVE)
    assert kept(store.load("b", T0)) == ('"B"', LIVE + 1)


@pytest.mark.parametrize("now, live", [
    (LIVE - 1, True), (LIVE - 0.001, True),  # one millisecond before: still live
    (LIVE, False),  # expires > now: at its expiry a session is gone
    (LIVE + 0.001, False), (LIVE + 3600, False)])
def test_only_a_live_session_loads(store, now, live):
    store.insert("a", R("{}", LIVE))
    assert (store.load("a", now) is not None) is live


def test_an_expiry_is_kept_to_the_millisecond(store):
    expires = T0 + 60.1239  # BSON keeps T0 + 60.123
    store.insert("a", R("{}", expires))
    assert store.load("a", T0)[1] == pytest.approx(millis(expires), abs=1e-6)
    assert store.load("a", millis(expires) - 0.001) is not None
    assert store.load("a", millis(expires)) is None


def test_a_loaded_expiry_is_epoch_seconds(store):
    store.insert("a", R("{}", LIVE))
    assert isinstance(store.load("a", T0)[1], float)


# --- compare-and-set ---

def test_compare_and_set_writes_when_the_session_is_unchanged(store):
    store.insert("a", R('{"v":1}', LIVE))
    assert store.compare_and_set("a", '{"v":1}', R('{"v":2}', LIVE + 60), T0) is True
    assert kept(store.load("a", T0)) == ('{"v":2}', LIVE + 60)


def test_compare_and_set_refuses_when_someone_changed_it(store):
    store.insert("a", R('{"v":1}', LIVE))
    assert store.compare_and_set("a", '{"v":0}', R('{"v":2}', LIVE + 60), T0) is False
    assert kept(store.load("a", T0)) == ('{"v":1}', LIVE)


def test_compare_and_set_never_creates_a_session(store):
    assert store.compare_and_set("gone", '{"v":1}', R('{"v":2}', LIVE), T0) is False
    assert store.load("gone", T0) is None
    assert store.purge(T0 + 10**6) == 0  # not even an expired one


def test_compare_and_set_refuses_an_expired_session(store):
    store.insert("a", R('{"v":1}', LIVE))
    assert store.compare_and_set("a", '{"v":1}', R('{"v":2}', LIVE + 600), LIVE) is False
    assert kept(store.load("a", T0)) == ('{"v":1}', LIVE)  # unchanged, still expiring at LIVE


def test_compare_and_set_chains(store):
    store.insert("a", R("1", LIVE))
    assert store.compare_and_set("a", "1", R("2", LIVE), T0)
    assert not store.compare_and_set("a", "1", R("3", LIVE), T0)  # "1" is no longer what is stored
    assert store.compare_and_set("a", "2", R("3", LIVE), T0)
    assert kept(store.load("a", T0)) == ("3", LIVE)


def test_compare_and_set_can_shorten_the_expiry(store):
    store.insert("a", R("1", LIVE))
    assert store.compare_and_set("a", "1", R("2", T0 + 10), T0)
    assert store.load("a", T0 + 10) is None
    assert kept(store.load("a", T0 + 9)) == ("2", T0 + 10)


def test_compare_and_set_leaves_other_sessions_alone(store):
    store.insert("a", R("1", LIVE))
    store.insert("b", R("1", LIVE))
    assert store.compare_and_set("a", "1", R("2", LIVE + 5), T0)
    assert kept(store.load("b", T0)) == ("1", LIVE)


# --- touch ---

def test_touch_moves_the_expiry_of_a_live_session(store):
    store.insert("a", R('{"v":1}', LIVE))
    assert store.touch("a", LIVE + 300, T0) is True
    assert kept(store.load("a", LIVE + 299)) == ('{"v":1}', LIVE + 300)


def test_touch_never_revives_an_expired_session(store):
    store.insert("a", R("{}", LIVE))
    assert store.touch("a", LIVE + 300, LIVE) is False  # at its expiry it is gone
    assert store.load("a", LIVE) is None
    assert kept(store.load("a", T0)) == ("{}", LIVE)  # the expiry did not move


def test_touch_never_creates_a_session(store):
    assert store.touch("gone", LIVE, T0) is False
    assert store.load("gone", T0) is None


def test_touch_leaves_other_sessions_alone(store):
    store.insert("a", R("{}", LIVE))
    store.insert("b", R("{}", LIVE))
    store.touch("a", LIVE + 300, T0)
    assert kept(store.load("b", T0)) == ("{}", LIVE)


# --- delete ---

def test_delete_removes_the_session(store):
    store.insert("a", R("{}", LIVE))
    store.insert("b", R("{}", LIVE))
    store.delete("a")
    assert store.load("a", T0) is None
    assert kept(store.load("b", T0)) == ("{}", LIVE)
    assert not store.touch("a", LIVE, T0) and not store.compare_and_set("a", "{}", R("{}", LIVE), T0)


def test_deleting_a_missing_session_is_fine(store):
    store.delete("never-there")
    store.insert("a", R("{}", LIVE))
    store.delete("a")
    store.delete("a")
    assert store.load("a", T0) is None


def test_an_id_can_be_used_again_after_delete(store):
    store.insert("a", R("1", LIVE))
    store.delete("a")
    store.insert("a", R("2", LIVE + 1))
    assert kept(store.load("a", T0)) == ("2", LIVE + 1)


# --- purge ---

def test_purge_deletes_exactly_the_expired_sessions(store, clock):
    clock.now = T0 - 10  # inserted while all of them were live (MemoryStore sweeps a little at each insert)
    for i, expires in enumerate([T0 - 5, T0 - 0.001, T0, T0 + 0.001, T0 + 5]):
        store.insert(f"s{i}", R(str(i), expires))
    assert store.purge(T0) == 3  # expires <= now: not live, so gone
    assert [store.load(f"s{i}", T0 - 10) is not None for i in range(5)] == [False, False, False, True, True]


def test_purge_within_one_second_deletes_what_expired_and_keeps_the_rest_for_later(store, clock):
    clock.now = T0 - 10
    for sid, expires in [("a", T0 + 0.1), ("b", T0 + 0.2), ("c", T0 + 0.7)]:
        store.insert(sid, R(sid, expires))
    assert store.purge(T0 + 0.5) == 2
    assert kept(store.load("c", T0 + 0.5)) == ("c", T0 + 0.7)
    assert store.purge(T0 + 0.8) == 1  # "c" is still known to expire, and goes when it has
    assert store.load("c", T0) is None


def test_purge_of_nothing_expired_is_zero(store):
    store.insert("a", R("{}", LIVE))
    assert store.purge(T0) == 0
    assert store.purge(T0) == 0
    assert store.load("a", T0) is not None


def test_purge_counts_each_session_once(store):
    store.insert("a", R("{}", T0 + 1))
    store.touch("a", T0 + 2, T0)  # a moved expiry is still one session
    store.insert("b", R("{}", T0 + 1))
    assert store.purge(T0 + 10) == 2
    assert store.purge(T0 + 10) == 0


def test_purge_respects_a_touch(store):
    store.insert("a", R("{}", T0 + 10))
    store.touch("a", T0 + 100, T0)
    assert store.purge(T0 + 50) == 0
    assert kept(store.load("a", T0 + 50)) == ("{}", T0 + 100)
    assert store.purge(T0 + 101) == 1


def test_purge_respects_a_shortening_compare_and_set(store):
    store.insert("a", R("1", T0 + 100))
    store.compare_and_set("a", "1", R("2", T0 + 10), T0)
    assert store.purge(T0 + 50) == 1
    assert store.load("a", T0) is None


def test_purge_after_delete_is_zero(store):
    store.insert("a", R("{}", T0 + 1))
    store.delete("a")
    assert store.purge(T0 + 10) == 0


def test_ping_answers(store):
    assert store.ping() is None


# --- MemoryStore only: the cap, purge work, threads ---

def test_a_full_memory_store_ends_the_session_nearest_its_end_for_a_new_one(clock):
    store = sessions.MemoryStore(max_sessions=3, clock=clock)
    for n, sid in enumerate("abc"):
        store.insert(sid, R("{}", LIVE + n))
    store.touch("a", LIVE + 10, T0)  # "a" was used: now "b" is nearest its end
    store.insert("d", R("{}", LIVE))  # not refused: room is made
    assert [store.load(sid, T0) is not None for sid in "abcd"] == [True, False, True, True]
    assert len(store) == 3 and store.evicted == 1


@pytest.mark.parametrize("later", [10, 10.5, 11, 3600])  # 10: "a" expires at that very moment
def test_expired_sessions_do_not_count_against_the_cap(clock, later):
    store = sessions.MemoryStore(max_sessions=3, clock=clock)
    store.insert("a", R("{}", T0 + 10))
    store.insert("b", R("{}", LIVE + 3600))
    store.insert("c", R("{}", LIVE + 3600))
    clock.advance(later)  # "a" has expired, but nobody purged it yet
    store.insert("d", R("{}", LIVE + 3600))  # purged first, so there is room
    assert store.load("d", clock()) is not None and store.load("a", T0) is None
    assert store.evicted == 0  # an expired session is purged, not counted as ended early


def test_a_deleted_session_frees_its_place_under_the_cap(clock):
    store = sessions.MemoryStore(max_sessions=2, clock=clock)
    store.insert("a", R("{}", LIVE))
    store.insert("b", R("{}", LIVE))
    store.delete("a")
    store.insert("c", R("{}", LIVE))
    assert store.load("c", T0) is not None


def test_without_a_cap_the_memory_store_takes_many_sessions(clock):
    store = sessions.MemoryStore(clock=clock)
    for i in range(5000):
        store.insert(str(i), R("{}", LIVE))
    assert store.purge(LIVE + 1) == 5000


def _bytecodes_run_by_the_store(call):
    """Run call() and count the bytecodes it executes in MemoryStore's module: work, counted, not timed.
    (Opcodes, not lines: a one-line loop over every session is one line but many opcodes.)"""
    target, count = inspect.getsourcefile(sessions.MemoryStore), [0]

    def local(frame, event, arg):
        count[0] += event == "opcode"
        return local

    def trace(frame, event, arg):
        if frame.f_code.co_filename != target:
            return None
        frame.f_trace_opcodes = True
        return local

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        result = call()
    finally:
        sys.settrace(previous)
    return result, count[0]


def test_purge_work_is_proportional_to_what_expired(clock):
    store = sessions.MemoryStore(clock=clock)
    for i in range(10):
        store.insert(f"old{i}", R("{}", T0 + 1 + i / 100))
    for i in range(100_000):
        store.insert(f"live{i}", R("{}", LIVE + i % 1000))
    clock.advance(60)
    purged, work_10 = _bytecodes_run_by_the_store(lambda: store.purge(clock()))
    assert purged == 10
    assert all(store.load(f"live{i}", clock()) is not None for i in range(0, 100_000, 997))
    assert all(store.load(f"old{i}", T0) is None for i in range(10))
    # A scan of 100k sessions runs at least 100k bytecodes; a sweep of 10 a few hundred.
    assert work_10 < 5000, work_10
    _, work_0 = _bytecodes_run_by_the_store(lambda: store.purge(clock()))
    assert work_0 < 500, work_0


def test_threads_inserting_at_once_all_land(clock):
    store = sessions.MemoryStore(clock=clock)
    run_threads(lambda t: [store.insert(f"{t}-{i}", R(str(i), LIVE)) for i in range(500)], range(8))
    assert all(kept(store.load(f"{t}-{i}", T0)) == (str(i), LIVE) for t in range(8) for i in range(500))
    assert store.purge(LIVE + 1) == 8 * 500


def test_threads_at_the_cap_never_overfill_it(clock):
    store = sessions.MemoryStore(max_sessions=1000, clock=clock)
    landed = []

    def insert_many(t):
        for i in range(300):
            store.insert(f"{t}-{i}", R("{}", LIVE + i))
            landed.append(len(store._records))
    run_threads(insert_many, range(8))  # 2400 inserts for 1000 places
    assert max(landed) <= 1000 and store.evicted == 1400
    assert store.purge(LIVE + 1000) == 1000


def test_exactly_one_compare_and_set_wins_each_round(clock):
    store = sessions.MemoryStore(clock=clock)
    store.insert("a", R("0", LIVE))
    threads, rounds = 8, 50
    barrier = threading.Barrier(threads, timeout=30)
    wins = [[] for _ in range(rounds)]

    def contend(t):
        for r in range(rounds):
            previous = store.load("a", T0).text  # every thread sees the same version...
            barrier.wait()
            if store.compare_and_set("a", previous, R(f"{r + 1}:{t}", LIVE), T0):  # ...and one wins
                wins[r].append(t)
            barrier.wait()  # nobody reads the next round before this one is decided
    run_threads(contend, range(threads))
    assert [len(w) for w in wins] == [1] * rounds
    assert store.load("a", T0)[0] == f"{rounds}:{wins[-1][0]}"


def test_threads_touching_and_purging_keep_the_books_straight(clock):
    store = sessions.MemoryStore(clock=clock)
    for i in range(2000):
        store.insert(str(i), R("{}", T0 + 10))
    purged = []

    def work(t):
        if t == 0:
            for _ in range(50):
                purged.append(store.purge(T0 + 20))
        else:
            for i in range(t, 2000, 7):  # threads 1..7 share the ids out
                store.touch(str(i), T0 + 30, T0)
    run_threads(work, range(8))
    survivors = sum(store.load(str(i), T0 + 25) is not None for i in range(2000))
    # Whatever the interleaving, every session was purged once or touched in time, never both.
    assert sum(purged) + survivors == 2000
    assert store.purge(T0 + 30) == survivors


# --- what a store keeps beside the text: owner, start, last extension, client ---

def test_a_record_keeps_every_field(store):
    store.insert("a", R("{}", LIVE, owner="ann", created=T0 - 5, extended=T0 - 5, client="Firefox"))
    record = store.load("a", T0)
    assert (record.owner, record.client) == ("ann", "Firefox")
    assert record.created == pytest.approx(T0 - 5) and record.extended == pytest.approx(T0 - 5)


def test_compare_and_set_writes_the_owner_and_keeps_the_start_and_client(store):
    store.insert("a", R("1", LIVE, created=T0 - 5, client="Firefox"))
    assert store.compare_and_set("a", "1", R("2", LIVE, owner="ann"), T0)
    record = store.load("a", T0)
    assert (record.text, record.owner, record.client) == ("2", "ann", "Firefox")
    assert record.created == pytest.approx(T0 - 5) and record.extended == pytest.approx(T0)
    assert store.compare_and_set("a", "2", R("3", LIVE), T0)  # owner None: the session has none any more
    assert store.load("a", T0).owner is None and store.owned("ann", T0) == []


def test_touch_records_when_the_expiry_moved(store):
    store.insert("a", R("{}", LIVE, created=T0 - 5, extended=T0 - 5))
    assert store.touch("a", LIVE + 60, T0)
    assert store.load("a", T0).extended == pytest.approx(T0)


def test_insert_replacing_deletes_the_session_it_replaces(store):
    store.insert("old", R("1", LIVE))
    store.insert("new", R("2", LIVE), replacing="old")
    assert store.load("old", T0) is None and kept(store.load("new", T0)) == ("2", LIVE)


# --- an owner's sessions ---

def test_owned_lists_exactly_the_live_sessions_of_one_owner(store):
    store.insert("a1", R("1", LIVE, owner="ann"))
    store.insert("a2", R("2", LIVE + 1, owner="ann"))
    store.insert("a3", R("3", T0 - 1, owner="ann"))  # expired
    store.insert("b1", R("4", LIVE, owner="bob"))
    store.insert("n1", R("5", LIVE))  # nobody's
    assert sorted(key for key, _ in store.owned("ann", T0)) == ["a1", "a2"]
    assert [record.text for _, record in store.owned("bob", T0)] == ["4"]
    assert store.owned("carol", T0) == []


def test_delete_owned_ends_every_session_of_the_owner_but_one(store):
    for key in ("a1", "a2", "a3"):
        store.insert(key, R("{}", LIVE, owner="ann"))
    store.insert("b1", R("{}", LIVE, owner="bob"))
    assert store.delete_owned("ann", T0, keep="a2") == 2
    assert [key for key, _ in store.owned("ann", T0)] == ["a2"]
    assert store.delete_owned("ann", T0) == 1 and store.owned("ann", T0) == []
    assert store.load("b1", T0) is not None  # nobody else's
    assert store.delete_owned("nobody", T0) == 0


def test_the_owner_index_follows_every_change(store):
    store.insert("a", R("1", LIVE, owner="ann"))
    store.compare_and_set("a", "1", R("2", LIVE, owner="bob"), T0)  # handed over
    assert store.owned("ann", T0) == [] and [key for key, _ in store.owned("bob", T0)] == ["a"]
    store.touch("a", LIVE + 60, T0)
    assert [key for key, _ in store.owned("bob", T0)] == ["a"]
    store.insert("b", R("3", LIVE, owner="bob"), replacing="a")  # a login that replaces it
    assert [key for key, _ in store.owned("bob", T0)] == ["b"]
    store.delete("b")
    assert store.owned("bob", T0) == []


def test_an_expired_or_purged_session_leaves_its_owners_list(store):
    store.insert("a", R("{}", T0 + 1, owner="ann"))
    store.insert("b", R("{}", LIVE, owner="ann"))
    assert [key for key, _ in store.owned("ann", T0 + 1)] == ["b"]  # expired: not listed
    assert store.purge(T0 + 1) == 1
    assert [key for key, _ in store.owned("ann", T0 + 1)] == ["b"]


# --- MongoStore only: its indexes, and what it refuses ---

def mongo_stores(request):
    return [lambda **kw: sessions.MongoStore(HintedCollection(mongomock.MongoClient().db.c), **kw),
            lambda **kw: sessions.MongoStore(request.getfixturevalue("wire_client").db["c" + uuid.uuid4().hex],
                                             **kw)]


@pytest.mark.parametrize("kind", ["mongomock", pytest.param("wire", marks=pytest.mark.slow)])
def test_mongo_store_makes_its_ttl_and_owner_indexes_once(request, kind):
    make = mongo_stores(request)[kind == "wire"]
    store = make()
    collection = store.collection
    make_again = sessions.MongoStore(collection)  # a second instance, a restart: idempotent
    indexes = {tuple(index["key"].items()): index for index in collection.list_indexes()}
    assert indexes[(("expires", 1),)]["expireAfterSeconds"] == 0  # connect-mongo's autoRemove: 'native'
    assert (("owner", 1), ("expires", 1)) in indexes
    assert len(indexes) == 3 and make_again.collection is collection  # _id, expires, owner


def test_mongo_store_can_leave_the_indexes_to_you():
    collection = mongomock.MongoClient().db.c
    sessions.MongoStore(collection, ensure_indexes=False)
    assert all(dict(index["key"]) == {"_id": 1} for index in collection.list_indexes())


@pytest.mark.parametrize("not_a_collection", [None, "sessions", {}, mongomock.MongoClient().db])
def test_mongo_store_refuses_what_is_not_a_collection_at_once(not_a_collection):
    with pytest.raises(TypeError, match="^MongoStore needs a pymongo Collection"):
        sessions.MongoStore(not_a_collection)


def test_a_driver_error_becomes_store_unavailable_naming_only_its_type():
    from support.mongo import DownCollection
    store = sessions.MongoStore(DownCollection(), ensure_indexes=False)
    with pytest.raises(sessions.StoreUnavailable, match="^ServerSelectionTimeoutError$") as caught:
        store.load("a", T0)
    assert isinstance(caught.value.__cause__, pymongo.errors.ServerSelectionTimeoutError)


# --- MemoryStore only: what len() counts ---

def test_len_counts_only_live_sessions(clock):
    store = sessions.MemoryStore(clock=clock)
    store.insert("a", R("{}", T0 + 10))
    store.insert("b", R("{}", LIVE))
    assert len(store) == 2
    clock.advance(10)
    assert len(store) == 1  # "a" expired, though nobody purged it yet


def test_a_full_memory_store_still_takes_a_login_that_replaces_a_live_session(clock):
    store = sessions.MemoryStore(max_sessions=2, clock=clock)
    store.insert("a", R("{}", LIVE))
    store.insert("b", R("{}", LIVE))
    store.insert("a2", R("{}", LIVE), replacing="a")  # a re-login: its old session makes room
    assert store.load("a", T0) is None and store.load("a2", T0) is not None and len(store) == 2
    assert store.load("b", T0) is not None and store.evicted == 0


def test_delete_owned_deletes_and_counts_only_live_sessions(store):
    store.insert("old", R("{}", T0 - 1, owner="ann"))  # expired, not yet purged
    store.insert("new", R("{}", LIVE, owner="ann"))
    assert store.delete_owned("ann", T0) == 1
    assert store.owned("ann", T0) == []


def test_a_session_written_many_times_keeps_one_entry_of_expiry_work(clock):
    store = sessions.MemoryStore(clock=clock)
    store.insert("a", R("0", LIVE))
    for n in range(10_000):  # every write extends it: the heap does not grow with them
        store.compare_and_set("a", str(n), R(str(n + 1), LIVE + n + 1), T0)
        store.touch("a", LIVE + n + 2, T0)
    assert len(store._due) == 1
    assert store.purge(LIVE + 10_002) == 1 and store._due == []
