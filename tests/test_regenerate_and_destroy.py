"""Regenerate (login), destroy (logout), what rolling and resave do for an unchanged session,
and the id the request arrived with (cookie_id), deleted only after the new one is stored."""

import json

import pytest

import sessions
from support.basics import SECRET, cookie_value
from support.library import login


# --- regenerate and destroy ---

def test_regenerate_issues_a_new_id_and_deletes_the_old(interface, mongo):
    old, cookie = login(interface)
    session = interface.open_session(cookie)
    session.regenerate()
    session["user"] = {"name": "Zed", "isLoggedIn": True}
    header = interface.save_session(session)
    assert session.id != old.id
    assert mongo.find_one({"_id": old.id}) is None
    assert mongo.find_one({"_id": session.id}) is not None
    assert interface.open_session(cookie).is_new
    assert interface.open_session(cookie_value(header))["user"]["name"] == "Zed"


def test_regenerate_starts_empty(interface):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session.regenerate()
    assert dict(session) == {}


def test_destroy_deletes_and_expires_the_cookie(interface, mongo):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session.destroy()
    header = interface.save_session(session)
    assert mongo.count_documents({}) == 0
    assert header.startswith("example.sid=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; ")


def test_destroying_a_new_session_touches_no_store(interface, counted):
    session = interface.open_session(None)
    session.destroy()
    assert interface.save_session(session).startswith("example.sid=;")
    assert counted.calls == []


def test_clearing_uses_the_path_and_domain_it_was_set_with(make_interface):
    interface = make_interface(cookie_path="/app", cookie_domain="example.com")
    session = interface.open_session(None, path="/app/cart")
    session["a"] = 1
    assert "; Domain=example.com; Path=/app;" in interface.save_session(session)
    session.destroy()
    assert "; Domain=example.com; Path=/app;" in interface.save_session(session)


def test_the_clearing_cookie_is_secure_when_the_cookie_was(make_interface):
    interface = make_interface(cookie_secure=True)
    session = interface.open_session(None)
    session.destroy()
    assert "; Secure" in interface.save_session(session)


# --- an unchanged session: rolling resends the cookie, resave rewrites the document ---

def test_rolling_sends_the_cookie_on_every_response(make_interface, counted):
    interface = make_interface(rolling=True)
    _, cookie = login(interface)
    counted.calls.clear()
    assert interface.save_session(interface.open_session(cookie)) is not None
    assert counted.writes() == 0


def test_resave_rewrites_an_unchanged_session(make_interface, counted):
    interface = make_interface(resave=True)
    _, cookie = login(interface)
    counted.calls.clear()
    interface.save_session(interface.open_session(cookie))
    assert counted.writes() == 1


# --- the id the request arrived with (express-session's cookieId) ---

def test_the_id_the_request_arrived_with_is_the_cookie_id(interface, mongo):
    first, cookie = login(interface)
    session = interface.open_session(cookie)
    assert session.cookie_id == first.id == session.id
    session.regenerate()
    assert session.cookie_id == first.id != session.id
    assert interface.open_session(None).cookie_id is None


def test_an_unreadable_document_still_has_its_cookie_id(interface, mongo):
    first, cookie = login(interface)
    mongo.update_one({"_id": first.id}, {"$set": {"session": "{not json"}})
    session = interface.open_session(cookie)
    assert session.is_new and session.id != first.id and session.cookie_id == first.id


def test_regenerating_twice_deletes_the_id_the_request_arrived_with(interface, mongo):
    first, cookie = login(interface)
    session = interface.open_session(cookie)
    session.regenerate()
    session.regenerate()  # the first new id was never stored; the one to delete is still the cookie's
    session["user"] = {"name": "Zed", "isLoggedIn": True}
    interface.save_session(session)
    assert mongo.find_one({"_id": first.id}) is None
    assert [d["_id"] for d in mongo.find()] == [session.id]
    assert interface.open_session(cookie).is_new


@pytest.mark.parametrize("steps", [("regenerate", "destroy"), ("destroy", "destroy")])
def test_destroying_after_another_change_deletes_the_id_the_request_arrived_with(interface, mongo, steps):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    for step in steps:
        getattr(session, step)()
    assert interface.save_session(session).startswith("example.sid=;")
    assert mongo.count_documents({}) == 0
    assert interface.open_session(cookie).is_new


def test_a_regenerated_session_left_empty_has_no_cookie_id_after_save(interface, mongo):
    first, cookie = login(interface)
    session = interface.open_session(cookie)
    session.regenerate()
    assert interface.save_session(session) is None  # empty: not stored, no cookie
    assert session.cookie_id is None and session.regenerated is False
    assert mongo.count_documents({}) == 0


# --- at login the new session is stored before the old one is deleted ---

class Boom(Exception):
    """A store failure the tests make happen."""


class RecordingStore(sessions.MongoStore):
    """Records the writes it is asked for, in order; insert can be made to fail."""

    def __init__(self, collection, fail_insert=False):
        super().__init__(collection)
        self.calls, self.fail_insert = [], fail_insert

    def insert(self, sid, *args, **kwargs):
        self.calls.append(("insert", sid))
        if self.fail_insert:
            raise Boom("the store refused the insert")
        return super().insert(sid, *args, **kwargs)

    def delete(self, sid):
        self.calls.append(("delete", sid))
        return super().delete(sid)


def login_again(store, interface, clock, cookie):
    """A second login on `cookie` through `store`: (its interface, the regenerated session, not yet saved)."""
    ours = sessions.SessionInterface(store, interface.options, clock=clock)
    session = ours.open_session(cookie)
    session.regenerate()
    session["user"] = {"name": "Zed", "isLoggedIn": True}
    return ours, session


def test_the_new_session_is_stored_before_the_old_one_is_deleted(interface, mongo, clock):
    first, cookie = login(interface)
    store = RecordingStore(mongo)
    ours, session = login_again(store, interface, clock, cookie)
    ours.save_session(session)
    assert store.calls == [("insert", session.id), ("delete", first.id)]


def test_a_failed_insert_at_login_leaves_the_old_session_valid(interface, mongo, clock):
    first, cookie = login(interface)
    ours, session = login_again(RecordingStore(mongo, fail_insert=True), interface, clock, cookie)
    with pytest.raises(Boom):
        ours.save_session(session)
    assert interface.open_session(cookie)["user"] == {"name": "Ann", "isLoggedIn": True}  # still logged in


def test_a_saved_regeneration_deletes_the_old_id_only_once(interface, mongo, clock):
    first, cookie = login(interface)
    store = RecordingStore(mongo)
    ours = sessions.SessionInterface(store, interface.options, clock=clock)
    session = ours.open_session(cookie)
    session.regenerate()
    session["a"] = 1
    ours.save_session(session)
    assert session.cookie_id == session.id  # now the stored id
    session["a"] = 2  # the same session object saved again (a second save in one request)
    ours.save_session(session)
    assert store.calls.count(("delete", first.id)) == 1
    assert [call for call in store.calls if call[0] == "delete"] == [("delete", first.id)]
    assert interface.open_session(f"example.sid=s%3A{sessions.sign(session.id, SECRET)}") == {"a": 2}


def test_regenerate_after_destroy_starts_a_session_that_is_stored(interface, mongo):
    first, cookie = login(interface)
    session = interface.open_session(cookie)
    session.destroy()
    session.regenerate()  # logged out, then logged in as someone else, in one request
    session["user"] = {"name": "Bob", "isLoggedIn": True}
    header = interface.save_session(session)
    assert header is not None and "Max-Age=0" not in header
    assert [json.loads(doc["session"])["user"]["name"] for doc in mongo.find()] == ["Bob"]
