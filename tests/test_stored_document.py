"""The document a session is stored as: connect-mongo's shape, JSON data only, the reserved
keys, the size cap to the exact byte, and the cookie object inside it (Secure, Domain)."""

import pytest

import sessions
from support.basics import T0, cookie_value
from support.library import login, stored


# --- connect-mongo's document ---

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


# --- JSON only, and the reserved keys ---

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


@pytest.mark.parametrize("key", sessions.RESERVED_KEYS)
def test_reserved_keys_are_refused(interface, key):
    session = interface.open_session(None)
    session[key] = 1
    with pytest.raises(sessions.SessionDataError, match="reserved"):
        interface.save_session(session)


# --- the size cap, to the exact byte ---

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


# --- the stored cookie object: Secure follows the request's scheme, Domain is kept ---

@pytest.mark.parametrize("mode, https, secure", [
    ("auto", True, True), ("auto", False, False), (True, True, True), (False, True, False)])
def test_secure_attribute(make_interface, mongo, mode, https, secure):
    interface = make_interface(cookie_secure=mode)
    session = interface.open_session(None, https=https)
    session["a"] = 1
    header = interface.save_session(session)
    assert ("; Secure" in header) is secure
    assert stored(mongo)[1]["cookie"]["secure"] is secure


def test_a_change_over_https_stores_secure_true(interface, mongo):
    _, cookie = login(interface)
    session = interface.open_session(cookie, https=True)
    session["cart"] = [1]
    assert "; Secure" in interface.save_session(session)
    assert stored(mongo)[1]["cookie"]["secure"] is True


def test_the_stored_cookie_object_names_the_domain(make_interface, mongo):
    interface = make_interface(cookie_domain="example.com")
    login(interface)
    assert stored(mongo)[1]["cookie"]["domain"] == "example.com"
