"""Two requests changing one session: a failed compare-and-set merges only this request's own
changes, or gives up with SessionConflict (the threaded version, over the wire: test_wire.py)."""

import json

import pytest

import sessions
from support.basics import T0, cookie_value
from support.library import login


class InterferingStore(sessions.MongoStore):
    """Runs the next queued 'other request' just before each compare-and-set."""

    def __init__(self, collection, others):
        super().__init__(collection)
        self.others = others

    def compare_and_set(self, *args):
        if self.others:
            self.others.pop(0)()
        return super().compare_and_set(*args)


# --- a merge keeps this request's changes and the other request's ---

def test_a_merge_keeps_only_our_own_changes_across_retries(interface, mongo, clock):
    _, cookie = login(interface, {"x": 5})

    def other_request_sets_x(value):
        def run():
            session = interface.open_session(cookie)
            session["x"] = value
            interface.save_session(session)
        return run

    others = [other_request_sets_x(6), other_request_sets_x(7)]
    ours = sessions.SessionInterface(InterferingStore(mongo, others), interface.options, clock=clock)
    session = ours.open_session(cookie)  # loads x=5
    session["y"] = 1
    ours.save_session(session)  # clashes twice: x became 6, then 7, between our tries
    assert interface.open_session(cookie) == {"x": 7, "y": 1}


def test_a_merge_never_brings_back_a_key_this_request_deleted(interface, mongo, clock):
    _, cookie = login(interface, {"x": 5, "y": 1, "z": 0})

    def other_request_sets_x():
        session = interface.open_session(cookie)
        session["x"] = 6
        interface.save_session(session)

    ours = sessions.SessionInterface(InterferingStore(mongo, [other_request_sets_x]), interface.options, clock=clock)
    session = ours.open_session(cookie)  # loads x=5, y=1, z=0
    del session["y"]  # this request deletes y...
    session["z"] = 1
    ours.save_session(session)  # ...and clashes with the other request's x=6, whose version still has y
    assert interface.open_session(cookie) == {"x": 6, "z": 1}


def test_a_merge_keeps_a_key_the_other_request_added(interface, mongo, clock):
    _, cookie = login(interface, {"x": 5})

    def other_request_adds_w():
        session = interface.open_session(cookie)
        session["w"] = [1]
        interface.save_session(session)

    ours = sessions.SessionInterface(InterferingStore(mongo, [other_request_adds_w]), interface.options, clock=clock)
    session = ours.open_session(cookie)
    session.pop("x")
    ours.save_session(session)
    assert interface.open_session(cookie) == {"w": [1]}


def set_k_to_none(session):
    session["k"] = None  # a new key whose value is null is still a change


def delete_k(session):
    del session["k"]


@pytest.mark.parametrize("stored, change, merged", [
    ({"x": 5}, set_k_to_none, {"x": 6, "k": None}),
    ({"x": 5, "k": None}, delete_k, {"x": 6}),  # a null key this request deleted never comes back
])
def test_a_merge_keeps_this_requests_change_of_a_null_key(interface, mongo, clock, stored, change, merged):
    _, cookie = login(interface, stored)

    def other_request_sets_x():
        session = interface.open_session(cookie)
        session["x"] = 6
        interface.save_session(session)

    ours = sessions.SessionInterface(InterferingStore(mongo, [other_request_sets_x]), interface.options, clock=clock)
    session = ours.open_session(cookie)
    change(session)
    ours.save_session(session)
    assert interface.open_session(cookie) == merged


# --- a conflict: the session ended meanwhile, or it never stopped changing ---

def test_a_merge_with_a_session_that_ended_meanwhile_is_a_conflict(interface, mongo, clock):
    _, cookie = login(interface, {"x": 5})
    ours = sessions.SessionInterface(InterferingStore(mongo, [lambda: mongo.delete_many({})]), interface.options,
                                     clock=clock)
    session = ours.open_session(cookie)
    session["x"] = 6
    with pytest.raises(sessions.SessionConflict, match="^the session ended while this request was changing it$"):
        ours.save_session(session)
    assert mongo.count_documents({}) == 0  # a logout stays a logout


def test_a_merge_that_never_wins_gives_up_with_a_conflict(interface, mongo, clock):
    _, cookie = login(interface, {"x": 0})

    def other_request_bumps_x():
        session = interface.open_session(cookie)
        session["x"] += 1
        interface.save_session(session)

    others = [other_request_bumps_x] * (sessions.MERGE_ATTEMPTS + 1)
    ours = sessions.SessionInterface(InterferingStore(mongo, others), interface.options, clock=clock)
    session = ours.open_session(cookie)
    session["y"] = 1
    with pytest.raises(sessions.SessionConflict, match="kept changing"):
        ours.save_session(session)
    assert interface.open_session(cookie) == {"x": sessions.MERGE_ATTEMPTS}


# --- a concurrent save keeps the other request's owner and lifetime ---

def test_a_merge_keeps_the_other_requests_owner_and_remember_me(make_interface, mongo, clock):
    interface = make_interface()
    first = interface.open_session(None)
    first["n"] = 1
    cookie = cookie_value(interface.save_session(first))
    mine, theirs = interface.open_session(cookie), interface.open_session(cookie)
    theirs.owner, theirs.max_age = "ann", 30 * 24 * 3600  # they ticked "remember me" and bound it
    interface.save_session(theirs)
    mine["cart"] = ["tea"]  # we changed only data: their owner and lifetime must stay
    interface.save_session(mine)
    doc = mongo.find_one()
    data = json.loads(doc["session"])
    assert doc["owner"] == "ann" and data["cookie"]["originalMaxAge"] == 30 * 24 * 3600 * 1000
    assert data["absoluteExpires"] == sessions.to_iso(T0 + 30 * 24 * 3600) and data["cart"] == ["tea"]
    assert mine.owner == "ann" and mine.max_age == 30 * 24 * 3600  # what we hold now is what is stored


def test_a_merge_keeps_our_own_owner_change_over_theirs(make_interface, mongo):
    interface = make_interface()
    first = interface.open_session(None)
    first["n"] = 1
    cookie = cookie_value(interface.save_session(first))
    mine, theirs = interface.open_session(cookie), interface.open_session(cookie)
    theirs["x"] = 1
    interface.save_session(theirs)
    mine.owner = "bob"
    interface.save_session(mine)
    assert mongo.find_one()["owner"] == "bob" and json.loads(mongo.find_one()["session"])["x"] == 1
