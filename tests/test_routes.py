"""The HTTP API's routes through webtest and mongomock: the seed flow (login, GET /name,
logout), GET /name is a 404 for every kind of missing session, and every error is JSON."""

import json

import pytest

import sessions
from support.app import login
from support.basics import SECRET, cookie_value


def sid_of(response):
    value = cookie_value(response.headers["Set-Cookie"]).split("=", 1)[1]
    return sessions.unsign(sessions.parse_cookie_header("x=" + value)["x"][2:], [SECRET])


# --- the seed flow ---

def test_login_then_name_then_logout(client, mongo):
    assert login(client).json == {"name": "Alice"}
    assert client.get("/name").json == {"name": "Alice"}
    assert client.post("/logout").json == {"loggedOut": True}
    assert client.get("/name", status=404).json == {"error": "not logged in"}
    assert mongo.count_documents({}) == 0


def test_login_stores_the_user(client, mongo):
    response = login(client, "  Bob  ")
    assert response.json == {"name": "Bob"}  # trimmed
    data = json.loads(mongo.find_one({"_id": sid_of(response)})["session"])
    assert data["user"] == {"name": "Bob", "isLoggedIn": True}


def test_login_with_a_form(client):
    assert client.post("/", {"name": "Carol"}).json == {"name": "Carol"}
    assert client.get("/name").json == {"name": "Carol"}


def test_login_issues_a_new_id(client, mongo):
    first = sid_of(login(client, "Ann"))
    second = sid_of(login(client, "Ann"))
    assert first != second
    assert [d["_id"] for d in mongo.find()] == [second]  # the old session is gone


def test_a_planted_session_id_is_not_kept_at_login(make_client, interface, mongo):
    # An attacker's session, planted in the victim's browser (session fixation).
    planted = interface.open_session(None)
    planted["user"] = {"name": "Mallory", "isLoggedIn": True}
    planted_cookie = cookie_value(interface.save_session(planted))
    victim = make_client()
    response = victim.post_json("/", {"name": "Victim"}, headers={"Cookie": planted_cookie})
    assert sid_of(response) != planted.id
    assert mongo.find_one({"_id": planted.id}) is None


def test_logout_without_a_session_is_200_and_clears_the_cookie(client, counted):
    response = client.post("/logout")
    assert response.status_int == 200
    assert response.headers["Set-Cookie"].startswith("example.sid=; Path=/; Expires=Thu, 01 Jan 1970")
    assert counted.calls == []


# --- GET /name: a read writes nothing until the touch interval has passed ---

def test_reading_a_session_sends_no_cookie_and_writes_nothing(client, counted):
    login(client)
    counted.calls.clear()
    response = client.get("/name")
    assert "Set-Cookie" not in response.headers
    assert counted.calls == ["find_one"]


def test_reading_after_the_touch_interval_extends_the_cookie(client, clock, counted):
    login(client)
    clock.advance(7 * 3600 / 10)
    counted.calls.clear()
    response = client.get("/name")
    assert "Max-Age=25200" in response.headers["Set-Cookie"]
    assert counted.calls == ["find_one", "update_one"]


# --- GET /name is 404 for every kind of missing session ---

def test_name_without_a_cookie_is_404_with_no_store_work(client, counted):
    assert client.get("/name", status=404).json["error"]
    assert counted.calls == []


@pytest.mark.parametrize("cookie", [
    "example.sid=garbage",
    "example.sid=s%3Aabc",
    "example.sid=s%3Aabc.bad-signature",
    "example.sid=" + "s%3A" + sessions.sign("unknown-id", "another-secret"),
])
def test_name_with_a_bad_cookie_is_404_and_nothing_is_stored(client, counted, cookie):
    response = client.get("/name", headers={"Cookie": cookie}, status=404)
    assert "Set-Cookie" not in response.headers
    assert counted.calls == []


def test_a_cookie_header_that_is_not_utf8_is_no_session(client, counted):
    client.get("/name", headers={"Cookie": "example.sid=s%3A\xff\xfe.\xff; other=\xe9"}, status=404)
    assert counted.calls == []


def test_name_with_an_unknown_session_is_404(client, counted):
    cookie = "example.sid=s%3A" + sessions.sign("unknown-id", SECRET)
    client.get("/name", headers={"Cookie": cookie}, status=404)
    assert counted.writes() == 0


def test_name_of_an_expired_session_is_404(client, clock):
    login(client)
    clock.advance(7 * 3600)
    client.get("/name", status=404)


def test_name_of_a_session_without_a_user_is_404_not_500(make_client, interface):
    session = interface.open_session(None)
    session["cart"] = ["apples"]
    cookie = cookie_value(interface.save_session(session))
    make_client().get("/name", headers={"Cookie": cookie}, status=404)


@pytest.mark.parametrize("flag", ["false", 1, "true", 1.0, "yes", [True], {"yes": True}, None])
def test_is_logged_in_must_be_exactly_true(make_client, interface, flag):
    session = interface.open_session(None)
    session["user"] = {"name": "Mallory", "isLoggedIn": flag}
    cookie = cookie_value(interface.save_session(session))
    response = make_client().get("/name", headers={"Cookie": cookie}, status=404)
    assert response.json == {"error": "not logged in"}


@pytest.mark.parametrize("user", [{"name": 42, "isLoggedIn": True}, {"isLoggedIn": True}, ["Ann", True], "Ann"])
def test_a_user_without_a_string_name_is_not_logged_in(make_client, interface, user):
    session = interface.open_session(None)
    session["user"] = user
    cookie = cookie_value(interface.save_session(session))
    make_client().get("/name", headers={"Cookie": cookie}, status=404)


def test_a_json_valued_neighbour_cookie_does_not_hide_the_session(client):
    response = login(client)
    cookie = 'analytics={"a":[1,2]}; ' + cookie_value(response.headers["Set-Cookie"])
    client.cookiejar.clear()
    assert client.get("/name", headers={"Cookie": cookie}).json == {"name": "Alice"}


# --- every error is JSON ---

@pytest.mark.parametrize("method, path, status", [
    ("GET", "/nowhere", 404), ("PUT", "/name", 405), ("GET", "/logout", 405), ("DELETE", "/", 405)])
def test_unknown_routes_answer_json(client, method, path, status):
    response = client.request(path, method=method, status=status)
    assert response.content_type == "application/json"
    assert response.json["error"]


def test_an_unexpected_error_is_a_json_500_without_details(make_client, monkeypatch):
    client = make_client()
    monkeypatch.setattr(sessions.SessionInterface, "open_session", lambda *a, **k: 1 / 0)
    response = client.get("/name", status=500, expect_errors=True)
    assert response.json == {"error": "internal server error"}


def test_an_unexpected_error_is_logged_by_its_kind(make_client, monkeypatch, caplog):
    client = make_client()
    monkeypatch.setattr(sessions.SessionInterface, "open_session", lambda *a, **k: 1 / 0)
    client.get("/name", status=500, expect_errors=True)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "unhandled error: ZeroDivisionError('division by zero')"]
