"""Security rules checked in-process through webtest (fast): headers a browser needs,
names that look like what they are, the page's cookie panel as sent, Max-Age in a
session's last second.  Their real-socket counterparts are in test_hardening.py."""

import json
import re

import pytest


# The app as main() serves it (conftest's make_client wraps it in service.outermost).

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def csp_directives(header):
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("GET", "/", {}, 200),
    ("POST", "/", {"params": '{"name": "Ann"}', "content_type": "application/json"}, 200),
    ("POST", "/", {"params": "x", "content_type": "text/plain"}, 415),
    ("POST", "/", {"params": "name=Ann", "headers": {"Origin": "https://evil.example"}}, 403),
    ("POST", "/logout", {}, 200),
    ("GET", "/name", {}, 404),
    ("GET", "/healthz", {}, 200),
    ("GET", "/readyz", {}, 200),
    ("PUT", "/name", {}, 405),
    ("GET", "/no-such-page", {}, 404),
])
def test_every_response_says_nosniff(client, method, path, kwargs, status):
    response = client.request(path, method=method, body=kwargs.get("params", "").encode(), expect_errors=True,
                              headers=kwargs.get("headers", {}),
                              **({"content_type": kwargs["content_type"]} if "content_type" in kwargs else {}))
    assert response.status_int == status
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("request_page", [
    lambda client: client.get("/"),
    lambda client: client.post("/", {"name": "   "}, headers=BROWSER, status=400),  # the page with an error
])
def test_the_page_forbids_framing_scripts_and_foreign_form_posts(client, request_page):
    page = request_page(client)
    assert page.content_type == "text/html"
    directives = csp_directives(page.headers["Content-Security-Policy"])
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert directives.get("script-src", directives.get("default-src")) == ["'none'"]
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("char", [
    "\x00", "\x07", "\x1b", "\x7f", "\x85",  # Cc: NUL, bell, escape, delete, a C1 control
    "\u202e", "\u202a", "\u2066", "\u061c",  # bidi: right-to-left override, embedding, isolate, Arabic mark
    "\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad",  # zero-width space, joiner, word joiner, BOM, soft hyphen
])
def test_a_name_with_a_control_or_format_character_is_refused_with_the_reason(client, mongo, char):
    response = client.post_json("/", {"name": f"ad{char}min"}, status=400)
    error = response.json["error"]
    assert re.search(r"control|invisible|direction|format|zero-width|bidi", error, re.I), error
    assert mongo.count_documents({}) == 0


def test_a_name_is_normalised_to_nfc_before_its_length_is_checked(client, mongo):
    decomposed = "e\u0301" * 60  # 120 characters in NFD, 60 in NFC
    nfc = "\u00e9" * 60
    assert client.post_json("/", {"name": f"  {decomposed}  "}).json == {"name": nfc}  # trimmed too
    assert client.get("/name").json == {"name": nfc}
    assert json.loads(mongo.find_one()["session"])["user"]["name"] == nfc  # stored in NFC
    assert client.post_json("/", {"name": "e\u0301" * 100}).json == {"name": "\u00e9" * 100}  # 200 in NFD
    client.post_json("/", {"name": "\u00e9" * 100 + "e\u0301"}, status=400)  # 101 in NFC


def test_a_cookie_without_the_prefix_is_shown_as_sent(client):
    page = client.get("/", headers={"Cookie": "example.sid=abcdefghij"}).text
    assert not re.search(r"<dd><code>s:</code> prefix", page)  # the old page claimed one for any cookie
    assert "abcdef" in page and "abcdefghij" not in page  # what was sent, its first 6 characters


def test_in_the_last_second_the_cookie_outlives_the_session_not_the_reverse(make_client, clock):
    client = make_client(absolute_timeout=10, touch_after=0)  # every read re-sends the cookie
    client.post_json("/", {"name": "Ann"})
    clock.advance(9.5)  # the absolute deadline is 0.5 s away: still served
    response = client.get("/name")
    assert response.json == {"name": "Ann"}
    max_age = int(re.search(r"Max-Age=(\d+)", response.headers["Set-Cookie"]).group(1))
    assert max_age >= 1, response.headers["Set-Cookie"]
    clock.advance(0.5)  # the deadline: the session has ended
    client.get("/name", status=404)


@pytest.mark.parametrize("path", ["/%ff", "/healthz%c0", "/na%ffme"])
def test_a_path_that_is_not_utf8_is_a_400_not_another_route(client, path):
    # Bottle would drop the bad bytes and serve /, /healthz and /name for these.
    response = client.get(path, status=400)
    assert response.json == {"error": "the path is not valid UTF-8"}
    assert response.headers.getall("X-Content-Type-Options") == ["nosniff"]
    assert response.headers.getall("Cache-Control") == ["no-store"]


def test_the_access_line_shows_the_path_as_sent():
    import io

    import webtest

    import service
    log = io.StringIO()
    app = webtest.TestApp(service.outermost(service.make_app(None), access_log=log))
    app.get("/caf%C3%A9", status=404)
    app.get("/%ff", status=400)
    assert " GET /caf%C3%A9 404 " in log.getvalue() and " GET /%FF 400 " in log.getvalue()
