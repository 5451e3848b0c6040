"""The HTTP API through webtest and mongomock: every route, every error."""

import json

import pytest

import sessions
from conftest import SECRET, DownCollection, cookie_value


def login(client, name="Alice", **kwargs):
    return client.post_json("/", {"name": name}, **kwargs)


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


def test_a_json_valued_neighbour_cookie_does_not_hide_the_session(client):
    response = login(client)
    cookie = 'analytics={"a":[1,2]}; ' + cookie_value(response.headers["Set-Cookie"])
    client.cookiejar.clear()
    assert client.get("/name", headers={"Cookie": cookie}).json == {"name": "Alice"}


# --- bad input changes nothing ---

BAD_LOGINS = [
    ({"params": "{not json", "content_type": "application/json"}, 400),
    ({"params": json.dumps({}), "content_type": "application/json"}, 400),
    ({"params": json.dumps({"name": ""}), "content_type": "application/json"}, 400),
    ({"params": json.dumps({"name": "   "}), "content_type": "application/json"}, 400),
    ({"params": json.dumps({"name": 42}), "content_type": "application/json"}, 400),
    ({"params": json.dumps({"name": ["a"]}), "content_type": "application/json"}, 400),
    ({"params": json.dumps({"name": "x" * 101}), "content_type": "application/json"}, 400),
    ({"params": json.dumps(["Alice"]), "content_type": "application/json"}, 400),
    ({"params": b"\xff\xfe", "content_type": "application/json"}, 400),
    ({"params": "name=", "content_type": "application/x-www-form-urlencoded"}, 400),
    ({"params": "other=1", "content_type": "application/x-www-form-urlencoded"}, 400),
    ({"params": json.dumps({"name": "x" * 17000}), "content_type": "application/json"}, 413),
    ({"params": "Alice", "content_type": "text/plain"}, 415),
    ({"params": "name=Alice", "extra_environ": {"CONTENT_TYPE": ""}}, 415),  # no content type at all
]


@pytest.mark.parametrize("request_kwargs, status", BAD_LOGINS)
def test_bad_login_is_rejected_and_changes_nothing(client, mongo, request_kwargs, status):
    login(client, "Alice")
    before = list(mongo.find())
    response = client.post("/", status=status, **request_kwargs)
    assert response.content_type == "application/json" and response.json["error"]
    assert "Set-Cookie" not in response.headers
    assert list(mongo.find()) == before
    assert client.get("/name").json == {"name": "Alice"}


def test_a_name_of_exactly_100_characters_is_accepted(client):
    assert login(client, "é" * 100).json == {"name": "é" * 100}


def test_a_body_without_a_declared_length_is_counted_as_read():
    # A chunked body declares no length; what is read counts.  (webtest and waitress
    # both fill CONTENT_LENGTH in, so the function is called directly.)
    import io
    import bottle
    import service
    environ = {"CONTENT_TYPE": "application/json",
               "wsgi.input": io.BytesIO(json.dumps({"name": "x" * 17000}).encode())}
    with pytest.raises(bottle.HTTPError) as caught:
        service.read_name(environ)
    assert caught.value.status_code == 413


# --- every error is JSON ---

@pytest.mark.parametrize("method, path, status", [
    ("GET", "/nowhere", 404), ("PUT", "/name", 405), ("GET", "/logout", 405), ("DELETE", "/", 405)])
def test_unknown_routes_answer_json(client, method, path, status):
    response = client.request(path, method=method, status=status)
    assert response.content_type == "application/json"
    assert response.json["error"]


def test_an_unexpected_error_is_a_json_500_without_details(make_client, monkeypatch):
    client = make_client()
    monkeypatch.setattr(sessions.SessionInterface, "open_session", lambda *a: 1 / 0)
    response = client.get("/name", status=500, expect_errors=True)
    assert response.json == {"error": "internal server error"}


# --- caching and cookies ---

@pytest.mark.parametrize("path", ["/name", "/logout"])
def test_session_responses_are_not_cacheable(client, path):
    login(client)
    response = client.request(path, method="GET" if path == "/name" else "POST")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Vary"] == "Cookie"


def test_login_response_is_not_cacheable(client):
    response = login(client)
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Vary"] == "Cookie"


def test_the_cookie_attributes(client):
    header = login(client).headers["Set-Cookie"]
    assert header.startswith("example.sid=s%3A")
    attributes = header.split("; ")[1:]
    assert attributes == ["Path=/", "Expires=Fri, 01 Jan 2100 07:00:00 GMT", "Max-Age=25200", "HttpOnly", "SameSite=Lax"]
    assert "Secure" not in header  # plain http, COOKIE_SECURE=auto


def test_secure_when_the_request_came_over_https(client):
    assert "; Secure" in login(client, extra_environ={"wsgi.url_scheme": "https"}).headers["Set-Cookie"]


@pytest.mark.parametrize("trust_proxy, forwarded, secure", [
    (True, "https", True), (False, "https", False),
    (True, "https, http", True),  # the first value is the client-facing one
    (True, "http, https", False)])
def test_x_forwarded_proto_counts_only_behind_a_trusted_proxy(make_client, trust_proxy, forwarded, secure):
    client = make_client(trust_proxy=trust_proxy)
    response = login(client, headers={"X-Forwarded-Proto": forwarded})
    assert ("; Secure" in response.headers["Set-Cookie"]) is secure


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


# --- health and the store failing ---

def test_healthz_does_no_store_work(client, counted):
    assert client.get("/healthz").json == {"status": "ok"}
    assert counted.calls == []


def test_readyz_pings_the_store(client):
    assert client.get("/readyz").json == {"status": "ready"}


def test_readyz_with_a_down_store_is_503(make_client):
    assert make_client(collection=DownCollection()).get("/readyz", status=503).json["error"]


def test_logout_with_a_down_store_is_503_and_keeps_the_cookie(make_client, client):
    cookie = cookie_value(login(client).headers["Set-Cookie"])
    down = make_client(collection=DownCollection())
    response = down.post("/logout", headers={"Cookie": cookie}, status=503)
    assert response.json["error"] and "Set-Cookie" not in response.headers


def test_login_with_a_down_store_is_503_not_200(make_client):
    response = make_client(collection=DownCollection()).post_json("/", {"name": "A"}, status=503)
    assert "Set-Cookie" not in response.headers


def test_name_with_a_cookie_and_a_down_store_is_503(make_client, client):
    cookie = cookie_value(login(client).headers["Set-Cookie"])
    down = make_client(collection=DownCollection())
    assert down.get("/name", headers={"Cookie": cookie}, status=503).json["error"]


def test_healthz_stays_200_with_a_down_store(make_client):
    make_client(collection=DownCollection()).get("/healthz", status=200)


# --- hostile input found in review ---

def test_json_nested_too_deep_is_a_400(client):
    response = client.post("/", "[" * 5000, content_type="application/json", status=400)
    assert response.json["error"] == "the body is not valid JSON"


def test_a_lone_surrogate_name_is_a_400(client, mongo):
    client.post("/", '{"name": "\\ud800"}', content_type="application/json", status=400)
    assert mongo.count_documents({}) == 0


@pytest.mark.parametrize("accept", ["text/html;q=\xb2", "text/html;q=1e3", ";;,,", "text/html;q="])
def test_an_odd_accept_header_is_no_500(client, accept):
    assert client.post_json("/", {"name": "A"}, headers={"Accept": accept}).json == {"name": "A"}


def test_media_types_in_accept_are_case_insensitive(client):
    client.post("/", {"name": "A"}, headers={"Accept": "Text/HTML"}, status=303)


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "https://evil.example"},  # an older browser: no Fetch Metadata, but an Origin
])
def test_a_cross_site_form_post_is_refused(client, mongo, headers):
    client.post("/", {"name": "Victim"})
    before = list(mongo.find())
    for path in ("/", "/logout"):
        response = client.post(path, {"name": "Attacker"}, headers=headers, status=403)
        assert "Set-Cookie" not in response.headers and response.json["error"]
    assert list(mongo.find()) == before
    assert client.get("/name").json == {"name": "Victim"}


@pytest.mark.parametrize("headers", [{}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                                     {"Origin": "http://localhost:80"}])
def test_same_origin_posts_and_api_clients_are_served(client, headers):
    assert client.post_json("/", {"name": "A"}, headers=headers).json == {"name": "A"}


@pytest.mark.parametrize("path", ["/name", "/nowhere"])
def test_error_answers_vary_on_the_cookie_too(client, path):
    response = client.get(path, status=404)
    assert response.headers["Vary"] == "Cookie" and response.headers["Cache-Control"] == "no-store"


def test_a_503_varies_on_the_cookie(make_client):
    response = make_client(collection=DownCollection()).get("/readyz", status=503)
    assert response.headers["Vary"] == "Cookie"


def test_a_failed_form_login_writes_nothing_even_when_a_touch_is_due(client, clock, counted):
    login(client)
    clock.advance(3000)  # past the touch interval
    counted.calls.clear()
    response = client.post("/", {"name": " "}, headers={"Accept": "text/html"}, status=400)
    assert "Set-Cookie" not in response.headers
    assert counted.writes() == 0 and counted.deletes() == 0


def test_a_cookie_header_that_is_not_utf8_is_no_session(client, counted):
    client.get("/name", headers={"Cookie": "example.sid=s%3A\xff\xfe.\xff; other=\xe9"}, status=404)
    assert counted.calls == []
