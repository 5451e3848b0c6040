"""An owner's sessions over MongoDB's wire protocol: every instance sees an ending at
once (the store is the truth), and an owner's sessions are found through their
index, never by scanning the collection."""

import uuid

import pymongo
import pytest
from pymongo import monitoring

import sessions
from support.realhttp import start_service, user_of

pytestmark = pytest.mark.slow

SECRET = "owners-over-the-wire-secret-of-32-chars"


@pytest.fixture
def two_instances(wire_server):
    env = {"MONGO_URL": wire_server.url + "owners" + uuid.uuid4().hex[:8], "SESSION_SECRET": SECRET}
    first, second = start_service(env), start_service(env)
    yield first, second
    first.stop()
    second.stop()


def log_in(instance, name, agent):
    user = user_of(instance)
    assert user.post("/", {"name": name}, headers={"User-Agent": agent}).status == 200
    return user


def on(instance, user):
    """The same browser (its cookie jar), its next request sent to another instance."""
    other = user_of(instance)
    other.jar = user.jar
    return other


def test_an_ending_on_one_instance_holds_on_every_other_at_once(two_instances):
    a, b = two_instances
    phone = log_in(a, "Ann", "Phone")
    laptop = log_in(b, "Ann", "Laptop")
    listed = on(a, laptop).get("/sessions").json()["sessions"]  # either instance lists both
    assert sorted(s["client"] for s in listed) == ["Laptop", "Phone"]
    [phone_entry] = [s for s in listed if not s["current"]]
    assert laptop.post("/sessions/end", {"handle": phone_entry["handle"]}).json() == {"ended": 1}
    assert phone.get("/name").status == 404 and on(b, phone).get("/name").status == 404
    tablet = log_in(a, "Ann", "Tablet")
    assert tablet.post("/logout", {"everywhere": True}).json() == {"loggedOut": True, "ended": 2}
    assert on(a, laptop).get("/name").status == 404 and laptop.get("/name").status == 404


class Recorder(monitoring.CommandListener):
    def __init__(self):
        self.commands = []

    def started(self, event):
        self.commands.append((event.command_name, event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_an_owners_sessions_are_found_through_the_owner_index(wire_server):
    recorder = Recorder()
    client = pymongo.MongoClient(wire_server.url, event_listeners=[recorder], serverSelectionTimeoutMS=5000)
    try:
        collection = client.owners["index" + uuid.uuid4().hex[:8]]
        store = sessions.MongoStore(collection)
        indexes = {tuple(index["key"].items()): index["name"] for index in collection.list_indexes()}
        assert (("owner", 1), ("expires", 1)) in indexes
        for n in range(3):
            store.insert(f"k{n}", sessions.Record("{}", 4_102_444_800 + n, owner="ann"))
        recorder.commands.clear()
        assert len(store.owned("ann", 0)) == 3
        assert store.delete_owned("ann", 0, keep="k0") == 2
        sent = [(name, command) for name, command in recorder.commands if name in ("find", "delete")]
        # MongoDB uses the index a query names in `hint` (and fails if there is none): an index
        # scan of this owner's entries, never a collection scan.
        assert [name for name, _ in sent] == ["find", "delete"]
        assert dict(sent[0][1]["hint"]) == {"owner": 1, "expires": 1}
        assert dict(sent[1][1]["deletes"][0]["hint"]) == {"owner": 1, "expires": 1}
        assert sent[0][1]["filter"]["owner"] == "ann" and sent[1][1]["deletes"][0]["q"]["owner"] == "ann"
        # Without the index, the same query is refused: the hint is not decoration.
        bare = sessions.MongoStore(client.owners["bare" + uuid.uuid4().hex[:8]], ensure_indexes=False)
        with pytest.raises(sessions.StoreUnavailable, match="OperationFailure"):
            bare.owned("ann", 0)
    finally:
        client.close()
