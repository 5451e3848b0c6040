"""The HTTP API through webtest and mongomock: every route, every error."""

import json

import pymongo.errors
import pytest

import service
import sessions
from support.basics import SECRET, T0, Ticks, cookie_value
from support.mongo import DownCollection, Wrapped


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
    monkeypatch.setattr(sessions.SessionInterface, "open_session", lambda *a, **k: 1 / 0)
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


@pytest.mark.parametrize("mode, scheme, secure", [
    ("auto", "http", False), ("auto", "https", True),
    (True, "https", True),  # (True, "http"): no session at all, test_express_session.py
    (False, "http", False), (False, "https", False)])
def test_secure_follows_cookie_secure_and_the_request_scheme(make_client, mongo, mode, scheme, secure):
    # HTTPS is what wsgi.url_scheme says (waitress sets it from X-Forwarded-Proto only for a
    # trusted proxy); the header itself, sent by anyone, changes nothing in the app.
    client = make_client(cookie_secure=mode)
    response = login(client, extra_environ={"wsgi.url_scheme": scheme},
                     headers={"X-Forwarded-Proto": "http" if scheme == "https" else "https"})
    assert ("; Secure" in response.headers["Set-Cookie"]) is secure
    assert json.loads(mongo.find_one()["session"])["cookie"]["secure"] is secure


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


def test_every_answer_carries_each_protective_header_exactly_once(client):
    answers = {"login": login(client), "read": client.get("/name"), "page": client.get("/"),
               "healthz": client.get("/healthz"), "404": client.get("/nowhere", status=404),
               "logout": client.post("/logout"), "anonymous 404": client.get("/name", status=404)}
    for label, response in answers.items():
        for name, value in [("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"), ("Vary", "Cookie")]:
            assert response.headers.getall(name) == [value], (label, name, response.headers.getall(name))


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


# --- behaviours pinned by name (issue 13) ---

@pytest.mark.parametrize("origin", [
    "http://localhost:80.evil.example",  # starts with this host
    "http://evil.localhost:80",  # ends with it
    "http://localhost:80@evil.example",  # userinfo that looks like the host
    "http://localhost:8080",  # another port
    "http://localhost",  # no port, while the Host has one
    "http://xlocalhost:80",
    "http://LOCALHOST:80.evil.example",
    "localhost:80",  # no scheme
    "null",  # a sandboxed frame or a privacy redirect
    "",
    "http://[",  # unparsable: foreign, not a 500
])
def test_an_origin_that_only_looks_like_this_host_is_refused(client, mongo, origin):
    client.post("/", {"name": "Victim"})
    before = list(mongo.find())
    for path in ("/", "/logout"):
        response = client.post(path, {"name": "Attacker"}, headers={"Origin": origin, "Host": "localhost:80"},
                               status=403)
        assert "Set-Cookie" not in response.headers and response.json["error"]
    assert list(mongo.find()) == before
    assert client.get("/name").json == {"name": "Victim"}


def test_an_origin_of_this_very_host_is_served(client):
    response = client.post_json("/", {"name": "A"}, headers={"Origin": "http://example.test:8080",
                                                             "Host": "example.test:8080"})
    assert response.json == {"name": "A"}


def test_fetch_metadata_wins_over_a_matching_origin(client):
    client.post_json("/", {"name": "A"}, headers={"Origin": "http://localhost:80", "Sec-Fetch-Site": "cross-site"},
                     status=403)


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


STORE_ERRORS = {
    "AutoReconnect": lambda: pymongo.errors.AutoReconnect("connection reset by peer"),
    "ServerSelectionTimeoutError": lambda: pymongo.errors.ServerSelectionTimeoutError("no servers found"),
    "NetworkTimeout": lambda: pymongo.errors.NetworkTimeout("timed out"),
    "ExecutionTimeout": lambda: pymongo.errors.ExecutionTimeout("operation exceeded time limit", 50),
    "WriteConcernError": lambda: pymongo.errors.WriteConcernError("waiting for replication timed out", 64, {}),
    "OperationFailure": lambda: pymongo.errors.OperationFailure("not primary", 10107),
}


class FailingCollection(Wrapped):
    """A working mongomock collection, except that the named operations raise `error`."""

    def __init__(self, collection, prefixes, error):
        super().__init__(collection)
        self.prefixes, self.error = prefixes, error

    @property
    def database(self):
        outer = self

        class Database:
            def command(self, *args, **kwargs):
                if "command" in outer.prefixes:
                    raise outer.error()
                return outer.collection.database.command(*args, **kwargs)
        return Database()

    def call(self, name, *args, **kwargs):
        if name.startswith(self.prefixes):
            raise self.error()
        return super().call(name, *args, **kwargs)


def _read_name(client, cookie, clock):
    return client.get("/name", headers={"Cookie": cookie}, status=503)


def _touch(client, cookie, clock):
    clock.advance(7 * 3600 / 10)  # the touch is due: a write
    return client.get("/name", headers={"Cookie": cookie}, status=503)


def _login(client, cookie, clock):
    return client.post_json("/", {"name": "Bob"}, status=503)


def _login_over_a_session(client, cookie, clock):
    return client.post_json("/", {"name": "Bob"}, headers={"Cookie": cookie}, status=503)


def _logout(client, cookie, clock):
    return client.post("/logout", headers={"Cookie": cookie}, status=503)


def _readyz(client, cookie, clock):
    return client.get("/readyz", status=503)


OPERATIONS = {  # what fails -> a request that needs it
    "read": (("find",), _read_name),
    "touch": (("update", "find_one_and"), _touch),
    "insert": (("insert",), _login),
    "delete at login": (("delete",), _login_over_a_session),
    "delete at logout": (("delete",), _logout),
    "ping": (("command",), _readyz),
}


@pytest.mark.parametrize("error", STORE_ERRORS.values(), ids=STORE_ERRORS.keys())
@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_every_store_error_is_a_json_503_never_a_500(make_client, client, mongo, clock, error, operation):
    prefixes, request = operation
    cookie = cookie_value(login(client).headers["Set-Cookie"])
    failing = make_client(collection=FailingCollection(mongo, prefixes, error))
    response = request(failing, cookie, clock)
    assert response.content_type == "application/json"
    assert response.json["error"].startswith("the session store is unavailable")
    assert "Set-Cookie" not in response.headers


def test_a_failed_insert_at_login_keeps_the_old_session(make_client, client, mongo):
    cookie = cookie_value(login(client, "Alice").headers["Set-Cookie"])
    failing = make_client(collection=FailingCollection(mongo, ("insert",), STORE_ERRORS["AutoReconnect"]))
    failing.post_json("/", {"name": "Bob"}, headers={"Cookie": cookie}, status=503)
    client.cookiejar.clear()
    assert client.get("/name", headers={"Cookie": cookie}).json == {"name": "Alice"}  # still logged in


def _body_of(size, form=False):
    """A login body of exactly `size` bytes, padded with an ignored field."""
    if form:
        head = "name=Alice&pad="
        return head + "x" * (size - len(head))
    head, tail = '{"name": "Alice", "pad": "', '"}'
    return head + "x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_a_body_of_exactly_16384_bytes_is_accepted(client, form):
    body = _body_of(16384, form)
    assert len(body.encode()) == service.MAX_BODY == 16384
    kind = "application/x-www-form-urlencoded" if form else "application/json"
    assert client.post("/", body, content_type=kind).json == {"name": "Alice"}


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_a_body_of_16385_bytes_is_413(client, mongo, form):
    body = _body_of(16385, form)
    kind = "application/x-www-form-urlencoded" if form else "application/json"
    response = client.post("/", body, content_type=kind, status=413)
    assert response.json == {"error": "the body must be at most 16384 bytes"}
    assert mongo.count_documents({}) == 0


@pytest.mark.parametrize("size, ok", [(16384, True), (16385, False)])
def test_a_body_without_a_declared_length_is_capped_at_exactly_16384_bytes(size, ok):
    import io
    import bottle
    environ = {"CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(_body_of(size).encode())}
    if ok:
        assert service.read_name(environ) == "Alice"
    else:
        with pytest.raises(bottle.HTTPError) as caught:
            service.read_name(environ)
        assert caught.value.status_code == 413


# --- exact error answers ---

@pytest.mark.parametrize("body, kind, error", [
    ("Alice", "text/plain", "send application/json or application/x-www-form-urlencoded"),
    ("{not json", "application/json", "the body is not valid JSON"),
    (b"name=\xff", "application/x-www-form-urlencoded", "the body is not valid form data"),
    ('{"name": ""}', "application/json", "name must be a string of 1 to 100 characters"),
    ('{"name": 42}', "application/json", "name must be a string of 1 to 100 characters"),
    ("name=&name=Bob", "application/x-www-form-urlencoded", "name must be a string of 1 to 100 characters"),
    ('{"name": "A\\u0000B"}', "application/json", "name must not contain control characters"),
    ('{"name": "A\\u202eB"}', "application/json", "name must not contain invisible or direction-changing characters"),
    ('{"name": "A\\ud800"}', "application/json", "name must not contain unpaired surrogate characters"),
    ('{"name": "A\\u0007\\u200bB"}', "application/json",
     "name must not contain control or invisible or direction-changing characters"),
])
def test_a_bad_login_says_exactly_what_is_wrong(client, body, kind, error):
    response = client.post("/", body, content_type=kind, expect_errors=True)
    assert response.status_int in (400, 415)
    assert response.json == {"error": error}


def test_a_declared_length_over_the_cap_is_refused_before_reading():
    import io
    import bottle
    environ = {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "16385",
               "wsgi.input": io.BytesIO(b'{"name": "Alice"}')}  # the declared length is enough to refuse
    with pytest.raises(bottle.HTTPError) as caught:
        service.read_name(environ)
    assert caught.value.status_code == 413 and caught.value.body == "the body must be at most 16384 bytes"


def test_a_chunked_body_over_the_cap_says_why():
    import io
    import bottle
    environ = {"CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(_body_of(16385).encode())}
    with pytest.raises(bottle.HTTPError) as caught:
        service.read_name(environ)
    assert caught.value.body == "the body must be at most 16384 bytes"


def test_a_request_without_a_content_type_is_415():
    import io
    import bottle
    with pytest.raises(bottle.HTTPError) as caught:
        service.read_name({"wsgi.input": io.BytesIO(b"name=A")})
    assert caught.value.status_code == 415


def test_a_cross_site_post_says_why(client):
    response = client.post("/", {"name": "A"}, headers={"Sec-Fetch-Site": "cross-site"}, status=403)
    assert response.json == {"error": "cross-site form posts are refused"}


def test_a_browser_post_is_redirected_with_an_empty_body(client):
    response = client.post("/", {"name": "A"}, headers={"Accept": "text/*, application/json;q=0.5"}, status=303)
    assert response.headers["Location"].endswith("/") and response.body == b""


def test_a_wildcard_in_accept_counts_for_json_too(client):
    # text/html at 0.5, anything else (JSON included) at 0.9: JSON is preferred.
    response = client.post("/", {"name": "A"}, headers={"Accept": "text/html;q=0.5, */*;q=0.9"})
    assert response.json == {"name": "A"}


def test_an_unexpected_error_is_logged_by_its_kind(make_client, monkeypatch, caplog):
    client = make_client()
    monkeypatch.setattr(sessions.SessionInterface, "open_session", lambda *a, **k: 1 / 0)
    client.get("/name", status=500, expect_errors=True)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "unhandled error: ZeroDivisionError('division by zero')"]


# --- what every response gets: nosniff and the access line ---

@pytest.fixture
def utc(monkeypatch):
    import time
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_every_response_is_nosniff(interface):
    import webtest
    app = webtest.TestApp(service.outermost(service.make_app(interface)))
    for path, status in [("/healthz", 200), ("/name", 404), ("/nowhere", 404)]:
        response = app.get(path, status=status)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers.getall("X-Content-Type-Options") == ["nosniff"]  # once


def test_the_access_line_gives_time_method_path_status_and_milliseconds(interface, utc):
    import io
    import webtest
    log = io.StringIO()
    clock = Ticks(T0 + 0.1, T0 + 0.2, T0 + 1.5, T0 + 1.5021, T0 + 1.6, T0 + 1.6)
    app = webtest.TestApp(service.outermost(service.make_app(interface), access_log=log, clock=clock))
    app.get("/name", status=404)
    app.get("/a b\x01", status=404)  # the path quoted: no raw control characters in the log
    app.post("/logout?secret=1")  # never the query string
    # The time is when the answer was done; the milliseconds are how long it took.
    assert log.getvalue() == ("2100-01-01 00:00:00,200 INFO GET /name 404 100.0ms\n"
                              "2100-01-01 00:00:01,502 INFO GET /a%20b%01 404 2.1ms\n"
                              "2100-01-01 00:00:01,600 INFO POST /logout 200 0.0ms\n")


# --- the guarded store's breaker, per error kind (slots and the basics: test_guard.py) ---

class FlakyStore:
    """A store whose next calls fail with the queued errors, then succeed; it counts calls."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0

    def load(self, sid, now):
        self.calls += 1
        if self.errors:  # as MongoStore raises it: StoreUnavailable, the driver's error its cause
            error = self.errors.pop(0)
            raise sessions.StoreUnavailable(type(error).__name__) from error
        return sessions.Record("{}", now + 60)

    def ping(self):
        return self.load("x", 0)


def test_the_guarded_store_passes_calls_through(clock):
    guarded = service.GuardedStore(sessions.MemoryStore(clock=clock), slots=2, clock=clock)
    guarded.insert("a", sessions.Record("{}", T0 + 60))
    assert guarded.load("a", T0)[:2] == ("{}", T0 + 60)
    assert guarded.compare_and_set("a", "{}", sessions.Record("1", T0 + 60), T0) is True
    assert guarded.touch("a", T0 + 90, T0) is True
    guarded.delete("a")
    assert guarded.load("a", T0) is None


@pytest.mark.parametrize("error", ["AutoReconnect", "ServerSelectionTimeoutError", "NetworkTimeout",
                                   "ExecutionTimeout"])
def test_a_connection_failure_or_timeout_opens_the_breaker_until_a_probe_succeeds(clock, error):
    store = FlakyStore(STORE_ERRORS[error](), STORE_ERRORS[error]())
    guarded = service.GuardedStore(store, slots=2, retry_after=1.0, clock=clock)
    with pytest.raises(sessions.StoreUnavailable, match=error) as caught:
        guarded.load("a", T0)
    assert isinstance(caught.value.__cause__, pymongo.errors.PyMongoError)
    with pytest.raises(sessions.StoreUnavailable, match="a probe tries it again shortly"):
        guarded.load("a", T0)  # open: fails fast...
    assert store.calls == 1  # ...without asking the store
    clock.advance(0.999)
    with pytest.raises(sessions.StoreUnavailable):
        guarded.load("a", T0)
    assert store.calls == 1
    clock.advance(0.001)  # retry_after has passed: one probe goes through, and fails
    with pytest.raises(sessions.StoreUnavailable, match=error):
        guarded.load("a", T0)
    assert store.calls == 2
    with pytest.raises(sessions.StoreUnavailable):  # open again, for another retry_after
        guarded.load("a", T0)
    clock.advance(1.0)
    assert guarded.load("a", T0)[:2] == ("{}", T0 + 60)  # the probe succeeds: closed
    assert guarded.ping()[:2] == ("{}", 60) and store.calls == 4


@pytest.mark.parametrize("error", ["OperationFailure", "WriteConcernError"])
def test_an_error_that_is_no_outage_fails_only_its_own_request(clock, error):
    store = FlakyStore(STORE_ERRORS[error]())
    guarded = service.GuardedStore(store, slots=2, clock=clock)
    with pytest.raises(sessions.StoreUnavailable, match=error):
        guarded.load("a", T0)
    assert guarded.load("a", T0)[:2] == ("{}", T0 + 60)  # the breaker stayed closed
    assert store.calls == 2


def test_only_one_probe_at_a_time(clock):
    import threading
    entered, release = threading.Event(), threading.Event()

    class SlowStore(FlakyStore):
        def load(self, sid, now):
            if self.calls == 1:  # the probe: hangs until released
                self.calls += 1
                entered.set()
                release.wait(10)
                return ("{}", 1.0)
            return super().load(sid, now)

    store = SlowStore(STORE_ERRORS["AutoReconnect"]())
    guarded = service.GuardedStore(store, slots=4, retry_after=1.0, clock=clock)
    with pytest.raises(sessions.StoreUnavailable):
        guarded.load("a", T0)
    clock.advance(1.0)
    results = []
    probe = threading.Thread(target=lambda: results.append(guarded.load("a", T0)))
    probe.start()
    assert entered.wait(10)
    with pytest.raises(sessions.StoreUnavailable, match="a probe tries it again shortly"):
        guarded.load("a", T0)  # a second request while the probe is out: fails fast
    release.set()
    probe.join(10)
    assert results == [("{}", 1.0)] and store.calls == 2
    assert guarded.load("a", T0)[:2] == ("{}", T0 + 60)  # closed by the probe's success


def test_an_answer_that_never_started_is_logged_with_a_dash(utc):
    import io

    def broken(environ, start_response):
        raise RuntimeError("no answer")
    log = io.StringIO()
    app = service.outermost(broken, access_log=log, clock=Ticks(T0, T0))
    with pytest.raises(RuntimeError):
        app({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, lambda *a: None)
    assert log.getvalue() == "2100-01-01 00:00:00,000 INFO GET /x - 0.0ms\n"


def test_a_json_login_with_a_charset_is_accepted(client):
    response = client.post("/", '{"name": "A"}', content_type="application/json; charset=utf-8")
    assert response.json == {"name": "A"}


def test_the_guarded_stores_defaults():
    guarded = service.GuardedStore(sessions.MemoryStore(), slots=1)
    assert (guarded.stalled_after, guarded.retry_after) == (0.5, 1.0)


@pytest.mark.parametrize("busy_for", [0, 0.5])  # 0.5: exactly stalled_after is not yet a stall
def test_a_request_waits_for_a_slot_that_is_not_stalled(clock, busy_for):
    import threading
    entered, release = threading.Event(), threading.Event()

    class BusyStore:
        def load(self, sid, now):
            if sid == "busy":
                entered.set()
                release.wait(10)
            return (sid, 1.0)

    guarded = service.GuardedStore(BusyStore(), slots=1, stalled_after=0.5, clock=clock)
    busy = threading.Thread(target=guarded.load, args=("busy", T0))
    busy.start()
    assert entered.wait(10)
    clock.advance(busy_for)
    threading.Timer(0.1, release.set).start()  # the busy call ends soon
    assert guarded.load("b", T0) == ("b", 1.0)
    busy.join(10)


def test_after_the_breaker_closes_requests_run_side_by_side_again(clock):
    import threading
    entered, release = threading.Event(), threading.Event()

    class Store(FlakyStore):
        def load(self, sid, now):
            if sid == "slow":
                entered.set()
                release.wait(10)
            return super().load(sid, now)

    guarded = service.GuardedStore(Store(STORE_ERRORS["AutoReconnect"]()), slots=4, retry_after=1.0, clock=clock)
    with pytest.raises(sessions.StoreUnavailable):
        guarded.load("a", T0)
    clock.advance(1.0)
    guarded.load("a", T0)  # the probe succeeds: closed
    slow = threading.Thread(target=guarded.load, args=("slow", T0))
    slow.start()
    try:
        assert entered.wait(10)
        assert guarded.load("b", T0)[:2] == ("{}", T0 + 60)  # not treated as a second probe
    finally:
        release.set()
        slow.join(10)


@pytest.mark.parametrize("content_type", ["Application/JSON", "APPLICATION/JSON; charset=UTF-8"])
def test_media_types_are_case_insensitive(client, content_type):
    # RFC 9110 section 8.3.1: the type and subtype are case-insensitive.
    assert client.post("/", '{"name": "A"}', content_type=content_type).json == {"name": "A"}
