"""What every answer carries: caching headers, the cookie's attributes, nosniff, the access
line; and Accept, which picks JSON or a redirect to the page (prefers_html)."""

import json

from urllib.parse import urlsplit

import pytest

import service
from support.app import login
from support.basics import T0, Ticks
from support.mongo import DownCollection


# --- caching headers ---

@pytest.mark.parametrize("path", ["/name", "/logout"])
def test_session_responses_are_not_cacheable(client, path):
    login(client)
    response = client.request(path, method="GET" if path == "/name" else "POST")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Vary"] == "Cookie"


def test_login_response_is_not_cacheable(client):
    response = login(client)
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Vary"] == "Cookie"


@pytest.mark.parametrize("path", ["/name", "/nowhere"])
def test_error_answers_vary_on_the_cookie_too(client, path):
    response = client.get(path, status=404)
    assert response.headers["Vary"] == "Cookie" and response.headers["Cache-Control"] == "no-store"


def test_a_503_varies_on_the_cookie(make_client):
    response = make_client(collection=DownCollection()).get("/readyz", status=503)
    assert response.headers["Vary"] == "Cookie"


def test_every_answer_carries_each_protective_header_exactly_once(client):
    answers = {"login": login(client), "read": client.get("/name"), "page": client.get("/"),
               "healthz": client.get("/healthz"), "404": client.get("/nowhere", status=404),
               "logout": client.post("/logout"), "anonymous 404": client.get("/name", status=404)}
    for label, response in answers.items():
        for name, value in [("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"), ("Vary", "Cookie")]:
            assert response.headers.getall(name) == [value], (label, name, response.headers.getall(name))


# --- the cookie's attributes ---

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


# --- nosniff and the access line ---

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


def test_an_answer_that_never_started_is_logged_with_a_dash(utc):
    import io

    def broken(environ, start_response):
        raise RuntimeError("no answer")
    log = io.StringIO()
    app = service.outermost(broken, access_log=log, clock=Ticks(T0, T0))
    with pytest.raises(RuntimeError):
        app({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, lambda *a: None)
    assert log.getvalue() == "2100-01-01 00:00:00,000 INFO GET /x - 0.0ms\n"


# --- Accept: JSON, or a redirect to the page for a browser ---

def test_a_browser_post_is_redirected_with_an_empty_body(client):
    response = client.post("/", {"name": "A"}, headers={"Accept": "text/*, application/json;q=0.5"}, status=303)
    assert urlsplit(response.headers["Location"]).path == "/" and response.body == b""


def test_a_wildcard_in_accept_counts_for_json_too(client):
    # text/html at 0.5, anything else (JSON included) at 0.9: JSON is preferred.
    response = client.post("/", {"name": "A"}, headers={"Accept": "text/html;q=0.5, */*;q=0.9"})
    assert response.json == {"name": "A"}


def test_media_types_in_accept_are_case_insensitive(client):
    client.post("/", {"name": "A"}, headers={"Accept": "Text/HTML"}, status=303)


@pytest.mark.parametrize("accept", ["text/html;q=\xb2", "text/html;q=1e3", ";;,,", "text/html;q="])
def test_an_odd_accept_header_is_no_500(client, accept):
    assert client.post_json("/", {"name": "A"}, headers={"Accept": accept}).json == {"name": "A"}


def test_the_access_line_cuts_a_long_path_and_method(utc):
    import io
    log = io.StringIO()

    def answer(environ, start_response):
        start_response("404 Not Found", [])
        return [b""]
    app = service.outermost(answer, access_log=log)
    for method, path in (("GET", "/" + "a" * 5000), ("X" * 200, "/")):
        app({"REQUEST_METHOD": method, "PATH_INFO": path}, lambda *args: None)
    first, second = log.getvalue().splitlines()
    assert len(first) < 300 and "aaa... 404 " in first
    assert len(second) < 300 and " " + "X" * 20 + " / 404 " in second
