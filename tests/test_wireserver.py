"""Tests for the MongoDB stand-in in tests/support/wireserver.py.

Each test starts a real server process and talks to it with pymongo over TCP,
the way the session store will; fixtures stop every process by its PID.
"""

import datetime
import threading
import time

import pymongo
import pytest
from pymongo import WriteConcern
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError, ServerSelectionTimeoutError

from support import wireserver

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


def utcnow():
    """Naive UTC cut to milliseconds, the precision of a BSON date."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def connect(url, **timeouts):
    options = {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 5000,
               "socketTimeoutMS": 10000}
    options.update(timeouts)
    return pymongo.MongoClient(url, **options)


@pytest.fixture
def wire_server():
    process = wireserver.start_wire_server()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def wire_client(wire_server):
    client = connect(wire_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def wire_sessions(wire_client):
    return wire_client.test_wireserver.sessions


# --- Basic behaviour ---

def test_crud_round_trip_keeps_datetimes_as_datetimes(wire_sessions):
    expires = utcnow() + datetime.timedelta(hours=1)
    wire_sessions.insert_one({"_id": "s1", "data": {"user": "ann"}, "expires": expires})

    found = wire_sessions.find_one({"_id": "s1"})
    assert found == {"_id": "s1", "data": {"user": "ann"}, "expires": expires}
    assert isinstance(found["expires"], datetime.datetime)

    result = wire_sessions.replace_one({"_id": "s1"}, {"data": {"user": "bob"}, "expires": expires})
    assert (result.matched_count, result.modified_count) == (1, 1)
    assert wire_sessions.find_one({"_id": "s1"}, {"_id": 0, "data": 1}) == {"data": {"user": "bob"}}

    assert wire_sessions.delete_one({"_id": "s1"}).deleted_count == 1
    assert wire_sessions.find_one({"_id": "s1"}) is None


def test_upsert_reports_the_new_id_and_then_an_update(wire_sessions):
    first = wire_sessions.update_one({"_id": "s1"}, {"$set": {"n": 1}}, upsert=True)
    again = wire_sessions.update_one({"_id": "s1"}, {"$set": {"n": 2}}, upsert=True)

    assert first.upserted_id == "s1"
    assert (again.upserted_id, again.matched_count, again.modified_count) == (None, 1, 1)
    assert wire_sessions.count_documents({"n": 2}) == 1


def test_id_with_or_matches_only_that_id(wire_sessions):
    now = utcnow()
    wire_sessions.insert_many([{"_id": "a", "expires": now + datetime.timedelta(hours=1)},
                          {"_id": "b", "expires": now + datetime.timedelta(hours=1)},
                          {"_id": "old", "expires": now - datetime.timedelta(hours=1)}])
    live = [{"expires": {"$exists": False}}, {"expires": {"$gt": now}}]

    assert wire_sessions.find_one({"_id": "b", "$or": live})["_id"] == "b"
    assert wire_sessions.find_one({"_id": "missing", "$or": live}) is None
    assert wire_sessions.find_one({"_id": "old", "$or": live}) is None


def test_set_of_a_date_on_an_existing_document_stays_a_date(wire_sessions):
    wire_sessions.insert_one({"_id": "s1", "expires": utcnow()})
    later = utcnow() + datetime.timedelta(days=1)

    wire_sessions.update_one({"_id": "s1"}, {"$set": {"expires": later, "lastModified": later}})

    found = wire_sessions.find_one({"_id": "s1"})
    assert found["expires"] == later and isinstance(found["expires"], datetime.datetime)
    assert wire_sessions.count_documents({"expires": {"$gt": utcnow()}}) == 1


def test_ttl_index_is_listed_with_expire_after_seconds(wire_sessions):
    assert wire_sessions.create_index("expires", expireAfterSeconds=0) == "expires_1"
    assert wire_sessions.create_index("expires", expireAfterSeconds=0) == "expires_1"  # idempotent

    indexes = {index["name"]: index for index in wire_sessions.list_indexes()}
    assert set(indexes) == {"_id_", "expires_1"}
    assert indexes["expires_1"]["expireAfterSeconds"] == 0
    assert dict(indexes["expires_1"]["key"]) == {"expires": 1}


def test_duplicate_key_raises_duplicate_key_error(wire_sessions):
    wire_sessions.insert_one({"_id": "s1", "email": "ann@example.com"})
    wire_sessions.create_index("email", unique=True)

    with pytest.raises(DuplicateKeyError):
        wire_sessions.insert_one({"_id": "s1"})
    with pytest.raises(DuplicateKeyError):
        wire_sessions.insert_one({"_id": "s2", "email": "ann@example.com"})


@pytest.mark.parametrize("name", ["noSuchCommand", "findAndModify"])  # findAndModify: MongoDB's, not served here
def test_unknown_command_fails_with_code_59_and_names_the_command(wire_server, wire_client, name):
    with pytest.raises(OperationFailure) as failure:
        wire_client.test_wireserver.command(name, "sessions")
    assert failure.value.code == 59
    assert failure.value.details["codeName"] == "CommandNotFound"
    assert failure.value.details["errmsg"] == f"no such command: '{name}'"
    assert wire_server.wait_for(f"wireserver: no such command: '{name}'", timeout=5) is not None  # and on stderr


def test_an_unacknowledged_write_is_run_and_not_answered(wire_server, wire_client):
    # w:0 sets OP_MSG's moreToCome flag: a reply would desynchronise the connection
    # (the node driver sends endSessions this way when it closes).
    fire_and_forget = wire_client.test_wireserver.get_collection("sessions", write_concern=WriteConcern(w=0))
    fire_and_forget.insert_one({"_id": "s1"})
    deadline = time.monotonic() + 5
    while wire_client.test_wireserver.sessions.find_one({"_id": "s1"}) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wire_client.test_wireserver.sessions.find_one({"_id": "s1"}) == {"_id": "s1"}
    assert "Traceback" not in wire_server.log()


# --- TTL monitor ---

def test_expired_documents_stay_until_the_ttl_monitor_runs(wire_sessions):
    # The wire_server fixture's TTL monitor runs every 60 s, like mongod's: nothing is
    # swept during this test, so readers must filter on expires themselves.
    wire_sessions.create_index("expires", expireAfterSeconds=0)
    wire_sessions.insert_one({"_id": "old", "expires": utcnow() - datetime.timedelta(hours=1)})
    assert wire_sessions.find_one({"_id": "old"}) is not None


def test_ttl_monitor_deletes_expired_documents():
    process = wireserver.start_wire_server(ttl_monitor=0.2)
    client = connect(process.url)
    try:
        sessions = client.test_wireserver.sessions
        sessions.create_index("expires", expireAfterSeconds=0)
        sessions.insert_many([{"_id": "old", "expires": utcnow() - datetime.timedelta(seconds=1)},
                              {"_id": "new", "expires": utcnow() + datetime.timedelta(hours=1)}])
        deadline = time.monotonic() + 10
        while sessions.find_one({"_id": "old"}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [doc["_id"] for doc in sessions.find()] == ["new"]
    finally:
        client.close()
        process.stop()


# --- Persistence ---

def test_data_file_keeps_data_across_kill_and_restart(tmp_path):
    data = tmp_path / "wire.bson"
    expires = utcnow() + datetime.timedelta(hours=1)

    # Store a session and a TTL index, then kill the server abruptly.
    process = wireserver.start_wire_server(data=data)
    port = process.port
    try:
        with connect(process.url) as client:
            client.app.sessions.insert_one({"_id": "s1", "expires": expires})
            client.app.sessions.create_index("expires", expireAfterSeconds=0)
    finally:
        process.kill()

    # Restart on the same port with the same file: both are back.
    process = wireserver.start_wire_server(port=port, data=data)
    try:
        with connect(process.url) as client:
            assert client.app.sessions.find_one({"_id": "s1"}) == {"_id": "s1", "expires": expires}
            info = client.app.sessions.index_information()
            assert info["expires_1"]["expireAfterSeconds"] == 0
    finally:
        process.stop()


def test_without_a_data_file_a_restart_starts_empty():
    process = wireserver.start_wire_server()
    port = process.port
    try:
        with connect(process.url) as client:
            client.app.sessions.insert_one({"_id": "s1"})
    finally:
        process.stop()

    process = wireserver.start_wire_server(port=port)
    try:
        with connect(process.url) as client:
            assert client.app.sessions.find_one({"_id": "s1"}) is None
    finally:
        process.stop()


# --- Faults ---

@pytest.mark.parametrize("mode", ["hang", "drop"])
def test_fault_makes_operations_fail_and_off_recovers(wire_server, mode):
    client = connect(wire_server.url, socketTimeoutMS=500, connectTimeoutMS=500,
                     serverSelectionTimeoutMS=1000)
    try:
        sessions = client.test_wireserver.sessions
        sessions.insert_one({"_id": "s1"})

        assert client.admin.command({"testFault": mode})["ok"] == 1
        started = time.monotonic()
        with pytest.raises(PyMongoError):
            sessions.find_one({"_id": "s1"})
        assert time.monotonic() - started < 15  # bounded by the client's timeouts

        wire_server.set_fault("off")  # raw OP_MSG: no driver handshake needed
        # After a hang the driver's monitor needs about 1 s to see the server again (1.00-1.01 s
        # measured), as long as one selection may wait: retry within a bound, as a user would.
        deadline = time.monotonic() + 10
        while True:
            try:
                assert sessions.find_one({"_id": "s1"}) == {"_id": "s1"}
                break
            except ServerSelectionTimeoutError:
                assert time.monotonic() < deadline, "the server was not selectable 10 s after 'off'"
    finally:
        client.close()


# --- Concurrency ---

def test_sixteen_threads_see_consistent_results(wire_server):
    # Four clients (four connection pools), four threads on each.
    clients = [connect(wire_server.url) for _ in range(4)]
    errors = []

    def work(worker):
        sessions = clients[worker % 4].test_wireserver.sessions
        try:
            for i in range(20):
                sessions.insert_one({"_id": f"{worker}-{i}", "worker": worker, "i": i})
                mine = list(sessions.find({"worker": worker}, sort=[("i", 1)]))
                assert [doc["i"] for doc in mine] == list(range(i + 1))
        except Exception as exc:  # reported below; a thread cannot fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(50)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert clients[0].test_wireserver.sessions.count_documents({}) == 16 * 20
    finally:
        for client in clients:
            client.close()

