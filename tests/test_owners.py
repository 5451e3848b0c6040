"""A session's owner: list and end one user's sessions everywhere; ids hashed at rest.
The library (sessions.py) first, then the service's routes, in-process; over the wire:
test_owners_wire.py."""

import hashlib
import json
import logging
import re

import pytest
import webtest

import sessions
from support.basics import SECRET, T0, cookie_value
from support.mongo import DownCollection

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def start(interface, owner, client=FIREFOX, **data):
    session = interface.open_session(None, client=client)
    session.update(data or {"n": 1})
    session.owner = owner
    return session, cookie_value(interface.save_session(session))


# --- the library: who a session belongs to ---

@pytest.mark.parametrize("owner", [42, b"ann", "", "x" * (sessions.MAX_OWNER + 1), ["ann"]])
def test_an_owner_that_is_not_a_bounded_string_is_a_clear_error(interface, owner):
    session = interface.open_session(None)
    with pytest.raises(sessions.SessionDataError, match="^owner must be a string of 1 to 256 characters"):
        session.owner = owner
    assert session.owner is None


def test_the_owner_is_a_field_of_its_own_beside_connect_mongos(interface, mongo):
    session, _ = start(interface, "ann")
    doc = mongo.find_one()
    assert doc["owner"] == "ann" and "owner" not in json.loads(doc["session"])
    assert doc["client"] == FIREFOX


def test_a_listing_shows_each_live_session_of_one_owner_newest_first(interface, clock):
    first, _ = start(interface, "ann")
    clock.advance(60)
    second, _ = start(interface, "ann", client="curl/8.5")
    start(interface, "bob")
    listed = interface.list_sessions("ann")
    assert [info.handle for info in listed] == [interface.handle(second), interface.handle(first)]
    newest = listed[0]
    assert (newest.started, newest.last_extended, newest.client) == (T0 + 60, T0 + 60, "curl/8.5")
    assert newest.expires == T0 + 60 + 7 * 3600 and newest.absolute_expires == T0 + 60 + 24 * 3600
    assert interface.list_sessions("carol") == []


def test_a_handle_reveals_nothing_a_cookie_could_carry(interface):
    session, _ = start(interface, "ann")
    handle = interface.handle(session)
    assert re.fullmatch(r"[A-Za-z0-9_-]{20}", handle)
    assert session.id not in handle and handle not in session.id
    assert handle != hashlib.sha256(session.id.encode()).hexdigest()[:20]  # not the at-rest key either


def test_the_client_is_trimmed_to_one_printable_line_of_at_most_200_characters(interface):
    session, _ = start(interface, "ann", client="  Bot\x00\r\n" + "x" * 300)
    [info] = interface.list_sessions("ann")
    assert info.client == "Bot " + "x" * 196


def test_ending_one_session_by_its_handle_ends_only_that_one(interface):
    first, first_cookie = start(interface, "ann")
    second, second_cookie = start(interface, "ann")
    assert interface.end_session("bob", interface.handle(first)) is False  # not bob's
    assert interface.end_session("ann", interface.handle(first)) is True
    assert interface.open_session(first_cookie).is_new and not interface.open_session(second_cookie).is_new
    assert interface.end_session("ann", interface.handle(first)) is False  # gone already


def test_ending_every_session_but_this_one(interface):
    keep, keep_cookie = start(interface, "ann")
    others = [start(interface, "ann")[1] for _ in range(3)]
    bob = start(interface, "bob")[1]
    assert interface.end_sessions("ann", keep=keep) == 3
    assert all(interface.open_session(cookie).is_new for cookie in others)
    assert not interface.open_session(keep_cookie).is_new and not interface.open_session(bob).is_new


def test_an_owner_set_later_is_saved_as_a_change(interface, mongo):
    session = interface.open_session(None)
    session["n"] = 1
    cookie = cookie_value(interface.save_session(session))
    loaded = interface.open_session(cookie)
    loaded.owner = "ann"
    assert loaded.modified and interface.save_session(loaded) is not None
    assert mongo.find_one()["owner"] == "ann" and len(interface.list_sessions("ann")) == 1


def test_regenerate_leaves_the_new_session_without_an_owner_until_set(interface):
    session, cookie = start(interface, "ann")
    loaded = interface.open_session(cookie)
    loaded.regenerate()
    assert loaded.owner is None


# --- ids hashed at rest ---

def test_ids_at_rest_are_sha256_digests_and_the_cookie_keeps_the_id(make_interface, mongo):
    interface = make_interface(id_at_rest="sha256")
    session, cookie = start(interface, "ann")
    doc = mongo.find_one()
    assert doc["_id"] == hashlib.sha256(session.id.encode()).hexdigest()
    assert sessions.unsign(cookie.split("=", 1)[1].replace("s%3A", "", 1).replace("%2F", "/").replace(
        "%2B", "+"), [SECRET]) == session.id
    assert interface.open_session(cookie)["n"] == 1
    assert [info.handle for info in interface.list_sessions("ann")] == [interface.handle(session)]


def test_a_copy_of_the_store_holds_no_id_a_cookie_can_carry(make_client, mongo):
    client = make_client(id_at_rest="sha256")
    for name in ("Ann", "Bob", "Cy"):
        webtest.TestApp(client.app).post_json("/", {"name": name})
    ids = [doc["_id"] for doc in mongo.find()]
    assert len(ids) == 3
    for stolen in ids:  # each stored _id, signed with the real secret, is no session
        signed = "s%3A" + sessions.sign(stolen, SECRET).replace("/", "%2F").replace("+", "%2B")
        response = webtest.TestApp(client.app).get("/name", headers={"Cookie": f"example.sid={signed}"},
                                                  status=404)
        assert response.json == {"error": "not logged in"}


def test_switching_ids_at_rest_on_ends_the_sessions_stored_before(make_interface, counted):
    plain = make_interface()
    _, cookie = start(plain, "ann")
    hashed = make_interface(id_at_rest="sha256")
    assert hashed.open_session(cookie).is_new


# --- the service: the seed's login binds its session to the name ---

def log_in(client, name, agent=FIREFOX):
    return client.post_json("/", {"name": name}, headers={"User-Agent": agent})


def test_login_binds_the_session_to_its_name(client, mongo):
    log_in(client, "Ann")
    assert mongo.find_one()["owner"] == "Ann"


def test_sessions_lists_this_names_sessions_with_the_current_one_marked(make_client, clock):
    ann_phone, ann_laptop = make_client(), make_client()
    log_in(ann_phone, "Ann", agent="Phone")
    clock.advance(1)
    log_in(ann_laptop, "Ann", agent="Laptop")
    log_in(make_client(), "Bob")
    listed = ann_laptop.get("/sessions").json["sessions"]
    assert [(s["client"], s["current"]) for s in listed] == [("Laptop", True), ("Phone", False)]
    assert set(listed[0]) == {"handle", "current", "started", "lastExtended", "expires", "absoluteExpires",
                              "client"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", listed[0][k])
               for k in ("started", "lastExtended", "expires", "absoluteExpires"))


def test_sessions_is_404_when_not_logged_in(client):
    assert client.get("/sessions", status=404).json == {"error": "not logged in"}


def test_ending_another_session_by_its_handle(make_client):
    phone, laptop = make_client(), make_client()
    log_in(phone, "Ann", agent="Phone")
    log_in(laptop, "Ann", agent="Laptop")
    [phone_entry] = [s for s in laptop.get("/sessions").json["sessions"] if not s["current"]]
    assert laptop.post_json("/sessions/end", {"handle": phone_entry["handle"]}).json == {"ended": 1}
    assert phone.get("/name", status=404).json == {"error": "not logged in"}  # the phone is logged out
    assert laptop.get("/name").json == {"name": "Ann"}


def test_ending_all_others_keeps_the_current_one(make_client):
    devices = [make_client() for _ in range(4)]
    for device in devices:
        log_in(device, "Ann")
    assert devices[0].post_json("/sessions/end", {"others": True}).json == {"ended": 3}
    assert [d.get("/name", expect_errors=True).status_int for d in devices] == [200, 404, 404, 404]


def test_ending_the_current_session_by_its_handle_is_a_logout(client):
    log_in(client, "Ann")
    [entry] = client.get("/sessions").json["sessions"]
    response = client.post_json("/sessions/end", {"handle": entry["handle"]})
    assert response.json == {"ended": 1} and "Max-Age=0" in response.headers["Set-Cookie"]


def test_logout_everywhere_ends_every_session_this_one_included(make_client, mongo):
    devices = [make_client() for _ in range(3)]
    for device in devices:
        log_in(device, "Ann")
    log_in(make_client(), "Bob")
    response = devices[1].post_json("/logout", {"everywhere": True})
    assert response.json == {"loggedOut": True, "ended": 3}
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert [d.get("/name", expect_errors=True).status_int for d in devices] == [404, 404, 404]
    assert [doc["owner"] for doc in mongo.find()] == ["Bob"]


def test_a_plain_logout_is_unchanged(make_client):
    phone, laptop = make_client(), make_client()
    log_in(phone, "Ann")
    log_in(laptop, "Ann")
    assert laptop.post("/logout").json == {"loggedOut": True}
    assert phone.get("/name").json == {"name": "Ann"}


def test_the_page_form_posts_end_sessions_too(make_client):
    browser = {"Accept": "text/html"}
    phone, laptop = make_client(), make_client()
    log_in(phone, "Ann")
    log_in(laptop, "Ann")
    assert laptop.post("/sessions/end", {"others": "1"}, headers=browser, status=303)
    assert phone.get("/name", status=404)
    assert laptop.post("/logout", {"everywhere": "1"}, headers=browser, status=303)
    assert laptop.get("/name", status=404)


# --- bad input: a clear error, and nothing about anyone else ---

@pytest.fixture
def ann_and_bob(make_client):
    ann, bob = make_client(), make_client()
    log_in(ann, "Ann")
    log_in(bob, "Bob")
    return ann, bob


@pytest.mark.parametrize("handle", ["bob's", "A" * 20, "", "x" * 5000, 7, None, ["a"]],
                         ids=["bobs", "unknown", "empty", "long", "number", "null", "list"])
def test_a_handle_that_is_not_the_requesters_is_a_404_that_says_nothing(ann_and_bob, mongo, handle):
    ann, bob = ann_and_bob
    if handle == "bob's":
        handle = bob.get("/sessions").json["sessions"][0]["handle"]
    before = sorted(doc["_id"] for doc in mongo.find())
    response = ann.post_json("/sessions/end", {"handle": handle}, expect_errors=True)
    if isinstance(handle, str):
        assert (response.status_int, response.json) == (404, {"error": "no such session of yours"})
    else:  # not a handle at all
        assert response.status_int == 400 and "handle" in response.json["error"]
    assert sorted(doc["_id"] for doc in mongo.find()) == before  # nothing else changed


@pytest.mark.parametrize("body, status", [({}, 400), ({"others": False}, 400), ("[1]", 400),
                                          ("{not json", 400)])
def test_an_end_request_without_a_handle_or_others_is_a_400(ann_and_bob, body, status):
    ann, _ = ann_and_bob
    if isinstance(body, dict):
        response = ann.post_json("/sessions/end", body, status=status)
    else:
        response = ann.post("/sessions/end", body, content_type="application/json", status=status)
    assert "error" in response.json


def test_ending_sessions_while_not_logged_in_is_a_404(client):
    assert client.post_json("/sessions/end", {"others": True}, status=404).json == {"error": "not logged in"}
    assert client.post_json("/logout", {"everywhere": True}, status=404).json == {"error": "not logged in"}


def test_ending_sessions_is_refused_cross_site(ann_and_bob):
    ann, _ = ann_and_bob
    response = ann.post_json("/sessions/end", {"others": True}, headers={"Sec-Fetch-Site": "cross-site"},
                             status=403)
    assert response.json == {"error": "cross-site form posts are refused"}


def test_a_store_warning_names_the_sessions_handle_never_its_id(make_client, caplog):
    client = make_client()
    log_in(client, "Ann")
    cookie = client.cookies["example.sid"]
    sid = sessions.unsign(cookie.replace('"', "").replace("s%3A", "", 1).replace("%2F", "/").replace(
        "%2B", "+").removeprefix("s:"), [SECRET])
    down = make_client(DownCollection())
    with caplog.at_level(logging.WARNING, logger="service"):
        down.get("/name", headers={"Cookie": f"example.sid={cookie}"}, status=503)
    [line] = [r.getMessage() for r in caplog.records if r.name == "service"]
    handle = sessions.SessionInterface.handle_of_key(sid)
    assert f"(session {handle})" in line and sid not in line


def test_an_owner_with_a_lone_surrogate_is_a_clear_error(interface):
    with pytest.raises(sessions.SessionDataError, match="^owner must be"):
        interface.open_session(None).owner = "ann\ud800"


def test_ending_sessions_counts_only_live_ones(interface, clock):
    start(interface, "ann")
    clock.advance(7 * 3600 + 1)  # expired, not yet purged
    _, live = start(interface, "ann")
    assert interface.end_sessions("ann") == 1


@pytest.mark.parametrize("everywhere", [1, "yes", "True ", [], {}])
def test_logout_with_an_unclear_everywhere_is_a_400_not_a_quiet_half_logout(make_client, everywhere):
    phone, laptop = make_client(), make_client()
    log_in(phone, "Ann")
    log_in(laptop, "Ann")
    response = laptop.post_json("/logout", {"everywhere": everywhere}, status=400)
    assert "everywhere" in response.json["error"]
    assert phone.get("/name").json == {"name": "Ann"} and laptop.get("/name").json == {"name": "Ann"}


@pytest.mark.parametrize("others", [1, "yes", None])
def test_ending_others_with_an_unclear_flag_is_a_400(make_client, others):
    client = make_client()
    log_in(client, "Ann")
    assert "others" in client.post_json("/sessions/end", {"others": others}, status=400).json["error"]
