"""Opening a session: a bad cookie or an unreadable document is "no session" and a fresh id;
what another writer (connect-mongo, a custom store) may have stored still loads or is refused."""

import json

import pytest

import sessions
from support.basics import SECRET
from support.library import login


# --- a bad cookie or document is "no session" ---

def test_an_unsigned_id_is_no_session(interface):
    session, _ = login(interface)
    assert interface.open_session(f"example.sid={session.id}").is_new


def test_an_unknown_id_is_no_session_and_gets_a_fresh_id(interface):
    cookie = "example.sid=s%3A" + sessions.sign("never-issued", SECRET)
    session = interface.open_session(cookie)
    assert session.is_new and session.id != "never-issued"


@pytest.mark.parametrize("bad", ["not json", "[1, 2]", "null", '"text"', "{"])
def test_a_document_whose_session_is_not_a_json_object_is_no_session(interface, mongo, bad):
    session, cookie = login(interface)
    mongo.update_one({"_id": session.id}, {"$set": {"session": bad}})
    assert interface.open_session(cookie).is_new


def test_a_document_without_fields_is_no_session(interface, mongo):
    session, cookie = login(interface)
    mongo.update_one({"_id": session.id}, {"$unset": {"session": ""}})
    assert interface.open_session(cookie).is_new


@pytest.mark.parametrize("spoil", [
    lambda doc: "{not json",  # unreadable
    lambda doc: doc.replace('"absoluteExpires":"2100-01-02T00:00:00.000Z"',
                            '"absoluteExpires":"2099-12-31T23:59:59.000Z"'),  # past its absolute deadline
])
def test_a_session_that_cannot_be_served_gets_a_fresh_id_and_remembers_the_cookies(interface, mongo, spoil):
    first, cookie = login(interface)
    mongo.update_one({}, {"$set": {"session": spoil(mongo.find_one()["session"])}})
    session = interface.open_session(cookie)
    assert session.is_new and isinstance(session.id, str) and len(session.id) == 32 and session.id != first.id
    assert session.cookie_id == first.id  # a login or logout deletes it


# --- an unreadable document: left alone, until a login or logout deletes it ---

def test_an_unreadable_document_is_left_alone_by_a_plain_request(interface, mongo):
    session, cookie = login(interface)
    mongo.update_one({"_id": session.id}, {"$set": {"session": "{not json"}})
    assert interface.save_session(interface.open_session(cookie)) is None
    assert mongo.find_one({"_id": session.id})["session"] == "{not json"


@pytest.mark.parametrize("end", [sessions.Session.destroy, sessions.Session.regenerate])
def test_logout_or_login_deletes_the_unreadable_document_the_cookie_names(interface, mongo, end):
    session, cookie = login(interface)
    mongo.update_one({"_id": session.id}, {"$set": {"session": "{not json"}})
    fresh = interface.open_session(cookie)
    end(fresh)
    interface.save_session(fresh)
    assert mongo.find_one({"_id": session.id}) is None


# --- what another writer may have stored ---

def test_a_document_without_a_cookie_object_loads(interface, mongo):
    first, cookie = login(interface)
    mongo.update_one({}, {"$set": {"session": '{"user": {"name": "Ann", "isLoggedIn": true}}'}})
    session = interface.open_session(cookie)
    assert not session.is_new and session == {"user": {"name": "Ann", "isLoggedIn": True}}


def test_a_foreign_absolute_expires_means_no_known_deadline(interface, mongo):
    session, cookie = login(interface)
    doc = json.loads(mongo.find_one()["session"])
    mongo.update_one({}, {"$set": {"session": json.dumps({**doc, "absoluteExpires": 1234})}})
    loaded = interface.open_session(cookie)
    assert not loaded.is_new and loaded.absolute_expires is None and "absoluteExpires" not in loaded


@pytest.mark.parametrize("stored", [None, 42, {"user": "a dict, not JSON text"}, ["a", "list"]])
def test_a_session_field_that_is_not_text_is_no_session(interface, mongo, stored):
    session, cookie = login(interface)
    mongo.update_one({"_id": session.id}, {"$set": {"session": stored}})
    assert interface.open_session(cookie).is_new


@pytest.mark.parametrize("stored", [b'{"n": 1}', bytearray(b'{"n": 1}')])
def test_stored_json_as_bytes_loads(make_interface, stored):
    class BytesStore(sessions.MemoryStore):  # a custom store whose driver hands back bytes
        def load(self, sid, now):
            return sessions.Record(stored, now + 60)
    interface = sessions.SessionInterface(BytesStore(), make_interface().options)
    cookie = "example.sid=s%3A" + sessions.sign("an-id", SECRET).replace("/", "%2F").replace("+", "%2B")
    assert interface.open_session(cookie) == {"n": 1}
