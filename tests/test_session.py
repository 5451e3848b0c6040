"""The session: a dict that knows it changed, and its save to the store."""

import json

import pytest

import sessions
from support.basics import SECRET, T0, cookie_value


def stored(mongo):
    doc = mongo.find_one()
    return doc, json.loads(doc["session"])


def login(interface, data=None):
    session = interface.open_session(None)
    session.update(data or {"user": {"name": "Ann", "isLoggedIn": True}})
    return session, cookie_value(interface.save_session(session))


# --- change tracking ---

def test_a_loaded_session_is_unchanged(interface):
    _, cookie = login(interface)
    assert interface.open_session(cookie).modified is False


@pytest.mark.parametrize("edit", [
    lambda s: s.__setitem__("cart", []),
    lambda s: s["user"].__setitem__("name", "Bob"),  # nested
    lambda s: s.pop("user"),
    lambda s: s.update(user={"name": "Ann", "isLoggedIn": False}),
    lambda s: s.clear(),
    lambda s: s["cart"].append(3),  # a list, edited in place
    lambda s: s["cart"].__setitem__(0, 9),  # same length, another item
    lambda s: s["cart"].__setitem__(0, 1.0),  # same value to Python, another JSON type
    lambda s: s["cart"].pop(),
    lambda s: s["nested"]["list"].append({}),
])
def test_every_kind_of_edit_is_seen(interface, edit):
    _, cookie = login(interface, {"user": {"name": "Ann", "isLoggedIn": True}, "cart": [1, 2],
                                  "nested": {"list": [[]]}})
    session = interface.open_session(cookie)
    edit(session)
    assert session.modified


@pytest.mark.parametrize("before, after", [(1, True), (1, 1.0), (0, False), ("1", 1)])
def test_a_change_of_json_type_is_a_change(interface, before, after):
    # Python says 1 == True == 1.0; JSON (and the next reader) does not.
    _, cookie = login(interface, {"n": before})
    session = interface.open_session(cookie)
    session["n"] = after
    assert session.modified
    interface.save_session(session)
    assert type(interface.open_session(cookie)["n"]) is type(json.loads(json.dumps(after)))


def test_setting_the_same_value_is_no_change(interface):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session["user"] = {"isLoggedIn": True, "name": "Ann"}
    assert not session.modified


def test_a_nested_change_is_saved(interface, mongo):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session["user"]["name"] = "Bob"
    assert interface.save_session(session) is not None
    assert interface.open_session(cookie)["user"]["name"] == "Bob"


# --- the stored document ---

def test_the_document_has_connect_mongos_shape(interface, mongo):
    session, _ = login(interface)
    doc, data = stored(mongo)
    assert set(doc) == {"_id", "expires", "session", "createdAt", "lastModified"}
    assert sessions.to_timestamp(doc["createdAt"]) == sessions.to_timestamp(doc["lastModified"]) == T0
    assert doc["_id"] == session.id
    assert sessions.to_timestamp(doc["expires"]) == T0 + 7 * 3600
    assert data["user"] == {"name": "Ann", "isLoggedIn": True}
    assert data["cookie"] == {"originalMaxAge": 7 * 3600 * 1000, "expires": "2100-01-01T07:00:00.000Z",
                              "secure": False, "httpOnly": True, "path": "/", "sameSite": "lax"}
    assert data["absoluteExpires"] == "2100-01-02T00:00:00.000Z"


def test_an_empty_new_session_is_not_stored(interface, counted):
    assert interface.save_session(interface.open_session(None)) is None
    assert counted.calls == []


def test_save_uninitialized_stores_empty_sessions(make_interface, mongo):
    interface = make_interface(save_uninitialized=True)
    assert interface.save_session(interface.open_session(None)) is not None
    assert mongo.count_documents({}) == 1


def test_data_that_is_not_json_is_refused(interface, mongo):
    session = interface.open_session(None)
    session["when"] = object()
    with pytest.raises(sessions.SessionDataError, match="must be JSON"):
        interface.save_session(session)
    assert mongo.count_documents({}) == 0


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes"])
def test_a_loaded_session_refuses_data_that_is_not_json(interface, mongo, value):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session["bad"] = value
    with pytest.raises(sessions.SessionDataError, match="must be JSON"):
        interface.save_session(session)
    assert "bad" not in mongo.find_one()["session"]


def test_keys_become_strings_as_in_json(interface):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session[1] = "one"
    interface.save_session(session)
    assert interface.open_session(cookie)["1"] == "one"


def test_nan_is_not_json(interface):
    session = interface.open_session(None)
    session["x"] = float("nan")
    with pytest.raises(sessions.SessionDataError):
        interface.save_session(session)


def test_data_over_the_cap_is_refused(make_interface, mongo):
    interface = make_interface(max_size=1024)
    session = interface.open_session(None)
    session["blob"] = "é" * 400  # 400 characters, but the cap counts UTF-8 bytes
    with pytest.raises(sessions.SessionDataError, match="over the 1024-byte cap"):
        interface.save_session(session)
    assert mongo.count_documents({}) == 0


def test_the_default_cap_is_64_kib(interface, mongo):
    session = interface.open_session(None)
    session["blob"] = "x" * (64 * 1024 - 400)  # with the cookie object: just under 64 KiB
    interface.save_session(session)
    assert mongo.count_documents({}) == 1
    session = interface.open_session(None)
    session["blob"] = "x" * (64 * 1024)
    with pytest.raises(sessions.SessionDataError):
        interface.save_session(session)


@pytest.mark.parametrize("key", sessions.RESERVED_KEYS)
def test_reserved_keys_are_refused(interface, key):
    session = interface.open_session(None)
    session[key] = 1
    with pytest.raises(sessions.SessionDataError, match="reserved"):
        interface.save_session(session)


# --- opening: a bad cookie or document is "no session" ---

@pytest.mark.parametrize("bad", ["not json", "[1, 2]", "null", '"text"', "{"])
def test_a_document_whose_session_is_not_a_json_object_is_no_session(interface, mongo, bad):
    session, cookie = login(interface)
    mongo.update_one({"_id": session.id}, {"$set": {"session": bad}})
    assert interface.open_session(cookie).is_new


def test_a_document_without_fields_is_no_session(interface, mongo):
    session, cookie = login(interface)
    mongo.update_one({"_id": session.id}, {"$unset": {"session": ""}})
    assert interface.open_session(cookie).is_new


def test_an_unsigned_id_is_no_session(interface):
    session, _ = login(interface)
    assert interface.open_session(f"example.sid={session.id}").is_new


def test_an_unknown_id_is_no_session_and_gets_a_fresh_id(interface):
    cookie = "example.sid=s%3A" + sessions.sign("never-issued", SECRET)
    session = interface.open_session(cookie)
    assert session.is_new and session.id != "never-issued"


# --- regenerate, destroy, touch ---

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


# --- https and the Secure attribute ---

@pytest.mark.parametrize("mode, https, secure", [
    ("auto", True, True), ("auto", False, False), (True, True, True), (False, True, False)])
def test_secure_attribute(make_interface, mongo, mode, https, secure):
    interface = make_interface(cookie_secure=mode)
    session = interface.open_session(None, https=https)
    session["a"] = 1
    header = interface.save_session(session)
    assert ("; Secure" in header) is secure
    assert stored(mongo)[1]["cookie"]["secure"] is secure


# --- concurrent changes (the threaded version runs against the wire server in test_wire.py) ---

class InterferingStore(sessions.MongoStore):
    """Runs the next queued 'other request' just before each compare-and-set."""

    def __init__(self, collection, others):
        super().__init__(collection)
        self.others = others

    def compare_and_set(self, *args):
        if self.others:
            self.others.pop(0)()
        return super().compare_and_set(*args)


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


# --- the id the request arrived with (express-session's cookieId) ---

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


# --- exact size boundaries ---

def test_a_session_of_exactly_max_size_bytes_is_stored_and_one_byte_more_is_refused(make_interface, mongo):
    probe = make_interface(max_size=2**20)
    session = probe.open_session(None)
    session["blob"] = ""
    probe.save_session(session)
    overhead = len(mongo.find_one()["session"].encode())  # the cookie object and the deadline around the data
    mongo.delete_many({})
    interface = make_interface(max_size=1024)
    session = interface.open_session(None)
    session["blob"] = "x" * (1024 - overhead)
    interface.save_session(session)
    assert len(mongo.find_one()["session"].encode()) == 1024
    session = interface.open_session(None)
    session["blob"] = "x" * (1024 - overhead + 1)
    with pytest.raises(sessions.SessionDataError, match="1025 bytes, over the 1024-byte cap"):
        interface.save_session(session)
    assert mongo.count_documents({}) == 1


def test_a_changed_session_over_max_size_is_refused_and_the_stored_one_kept(make_interface, mongo):
    interface = make_interface(max_size=1024)
    session = interface.open_session(None)
    session["blob"] = "x"
    cookie = cookie_value(interface.save_session(session))
    before = mongo.find_one()["session"]
    session = interface.open_session(cookie)
    session["blob"] = "x" * 1024
    with pytest.raises(sessions.SessionDataError, match="over the 1024-byte cap"):
        interface.save_session(session)
    assert mongo.find_one()["session"] == before


# --- documents another service wrote ---

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


def test_a_foreign_absolute_expires_means_no_known_deadline(interface, mongo):
    session, cookie = login(interface)
    doc = json.loads(mongo.find_one()["session"])
    mongo.update_one({}, {"$set": {"session": json.dumps({**doc, "absoluteExpires": 1234})}})
    loaded = interface.open_session(cookie)
    assert not loaded.is_new and loaded.absolute_expires is None and "absoluteExpires" not in loaded


# --- small things a reader relies on ---

def test_a_new_sessions_flags_are_false(interface):
    session = interface.open_session(None)
    assert session.is_new is True
    assert session.destroyed is False and session.touched is False and session.regenerated is False
    assert session.modified is False


def test_a_loaded_session_is_not_new_and_a_saved_one_is_unchanged(interface):
    session, cookie = login(interface)
    assert session.is_new is False  # stored now
    loaded = interface.open_session(cookie)
    assert loaded.is_new is False and loaded.cookie_id == loaded.id == session.id


def test_a_new_session_is_unchanged_once_stored(interface, counted):
    session = interface.open_session(None)
    session["cart"] = [1]
    interface.save_session(session)  # inserted
    assert session.modified is False and session.stored is not None
    counted.calls.clear()
    interface.save_session(session)  # saving again in the same request writes nothing
    assert counted.calls == []


def test_a_changed_session_is_unchanged_once_saved(interface, counted):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session["cart"] = [1]
    interface.save_session(session)
    assert session.modified is False
    counted.calls.clear()
    interface.save_session(session)  # saving again writes nothing
    assert counted.writes() == 0


def test_a_regenerated_session_left_empty_has_no_cookie_id_after_save(interface, mongo):
    first, cookie = login(interface)
    session = interface.open_session(cookie)
    session.regenerate()
    assert interface.save_session(session) is None  # empty: not stored, no cookie
    assert session.cookie_id is None and session.regenerated is False
    assert mongo.count_documents({}) == 0


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


def test_a_document_without_a_cookie_object_loads(interface, mongo):
    first, cookie = login(interface)
    mongo.update_one({}, {"$set": {"session": '{"user": {"name": "Ann", "isLoggedIn": true}}'}})
    session = interface.open_session(cookie)
    assert not session.is_new and session == {"user": {"name": "Ann", "isLoggedIn": True}}


def test_the_stored_cookie_object_names_the_domain(make_interface, mongo):
    interface = make_interface(cookie_domain="example.com")
    login(interface)
    assert stored(mongo)[1]["cookie"]["domain"] == "example.com"


def test_a_change_over_https_stores_secure_true(interface, mongo):
    _, cookie = login(interface)
    session = interface.open_session(cookie, https=True)
    session["cart"] = [1]
    assert "; Secure" in interface.save_session(session)
    assert stored(mongo)[1]["cookie"]["secure"] is True


def test_the_clearing_cookie_is_secure_when_the_cookie_was(make_interface):
    interface = make_interface(cookie_secure=True)
    session = interface.open_session(None)
    session.destroy()
    assert "; Secure" in interface.save_session(session)


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


def test_a_value_that_is_not_json_is_a_change_refused_at_save(interface):
    import datetime
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session["when"] = datetime.date(2026, 12, 1)
    assert session.modified is True
    with pytest.raises(sessions.SessionDataError):
        interface.save_session(session)


def test_after_a_save_changes_are_found_against_what_was_saved_not_what_was_loaded(interface, counted):
    _, cookie = login(interface, {"n": 1})
    session = interface.open_session(cookie)
    session.regenerate()
    session["n"] = 2
    interface.save_session(session)  # inserted under the new id: {"n": 2}
    session["n"] = 1  # what was loaded, no longer what is stored
    assert session.modified is True
    counted.calls.clear()
    interface.save_session(session)
    assert counted.writes() == 1
    new_cookie = f"{interface.options.cookie_name}=" + sessions.urllib.parse.quote(
        "s:" + sessions.sign(session.id, SECRET), safe="")
    assert interface.open_session(new_cookie)["n"] == 1


def test_a_loaded_session_with_lists_is_unchanged(interface):
    _, cookie = login(interface, {"cart": [1, [2, {"a": [3]}]], "tags": []})
    assert interface.open_session(cookie).modified is False




# --- what another writer may have stored ---

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
