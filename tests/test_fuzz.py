"""No request of any shape is a 500, by property-based testing.

Hypothesis throws header values at every route and method, in-process through
webtest and the app as main() serves it (conftest's make_client).  A WSGI
server hands the app each header as a latin-1 string: any byte but CR and LF
can arrive, and UTF-8 (non-ASCII text) arrives as its bytes read as latin-1,
so both are generated.  Every answer must be below 500 and be what its route
promises: JSON, or HTML for the page and for a browser's form post, or a 303
back to the page; and nothing may be logged as an unhandled error, nor a
traceback written to wsgi.errors (where Bottle prints one).
"""

import http.cookiejar
import io
import json
import logging

from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import webtest

import sessions
from support.basics import SECRET

ROUTES = [("GET", "/"), ("POST", "/"), ("POST", "/logout"), ("GET", "/name"), ("GET", "/healthz"), ("GET", "/readyz")]
HEADERS = {"Origin": "HTTP_ORIGIN", "Sec-Fetch-Site": "HTTP_SEC_FETCH_SITE", "Accept": "HTTP_ACCEPT",
           "Cookie": "HTTP_COOKIE", "Content-Type": "CONTENT_TYPE", "Host": "HTTP_HOST",
           "X-Forwarded-Proto": "HTTP_X_FORWARDED_PROTO"}

GOOD_COOKIE = "example.sid=s%3A" + sessions.sign("no-such-session-id", SECRET)  # well signed, names nothing

# What a WSGI server can deliver: any latin-1 character but CR and LF ...
wire_text = st.text(st.characters(min_codepoint=0, max_codepoint=255, blacklist_characters="\r\n"), max_size=40)
# ... and UTF-8 text, as the latin-1 reading of its bytes.
utf8_text = st.text(max_size=20).map(lambda text: text.encode("utf-8", "surrogatepass").decode("latin-1"))
plausible = st.sampled_from([
    "", "null", "http://[", "http://localhost", "https://evil.example", "http://localhost:80", "same-origin",
    "cross-site", "none", "same-site", "text/html", "application/json", "*/*", "text/html;q=bogus",
    "application/json; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "https", "http", "HTTPS, http", GOOD_COOKIE, GOOD_COOKIE + "; example.sid=junk", "example.sid=s%3A",
    "example.sid=%ZZ", "example.sid=s%3Aa.b.c", "localhost", "localhost:80", "[::1]:80", "a b c"])
value = st.one_of(plausible, wire_text, utf8_text)
headers = st.dictionaries(st.sampled_from(sorted(HEADERS)), value, max_size=len(HEADERS))
bodies = st.one_of(st.sampled_from([b"", b'{"name": "Ann"}', b"name=Ann", b'{"name": 1}', b"\xff\xfe", b"[" * 50]),
                   st.binary(max_size=64))


class Errors(logging.Handler):
    """Collects the service's log records at ERROR and above."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def errors():
    handler = Errors()
    logging.getLogger("service").addHandler(handler)
    yield handler.records
    logging.getLogger("service").removeHandler(handler)


class KeepNoCookies(http.cookiejar.CookieJar):
    """webtest's cookie jar, kept empty: it cannot even read a Set-Cookie answered to an empty Host."""

    def extract_cookies(self, response, request):
        pass


def send(client, method, path, sent, body):
    """One request with exactly these headers (latin-1 strings in the environ, as a server gives them)."""
    client.cookiejar = KeepNoCookies()  # only the Cookie header generated, none from an earlier example
    environ = {HEADERS[name]: text for name, text in sent.items()}
    environ["wsgi.errors"] = io.StringIO()
    if method == "POST":
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
    environ.setdefault("HTTP_HOST", "localhost:80")
    request = webtest.TestRequest.blank(path, {**client.extra_environ, "REQUEST_METHOD": method, **environ})
    response = client.do_request(request, status=None, expect_errors=True)
    return response, environ["wsgi.errors"].getvalue()


def check(response, traceback, errors, method, path):
    where = f"{method} {path} -> {response.status}"
    assert response.status_int < 500, f"{where}: {response.body[:300]!r}"
    assert not traceback, f"{where}: Bottle wrote {traceback[:300]!r}"
    assert not errors, f"{where}: logged {[r.getMessage() for r in errors]}"
    kind = response.content_type
    if response.status_int == 303:  # a browser's form post, sent back to the page
        assert method == "POST" and urlsplit(response.headers["Location"]).path == "/"
    elif kind == "text/html":  # only the page, or a browser's failed form login
        assert path == "/" and (method == "GET" or response.status_int >= 400), where
        assert response.text.startswith("<!doctype html>")
    else:
        assert kind == "application/json", f"{where}: {kind}"
        body = json.loads(response.body)
        assert isinstance(body, dict) and (response.status_int < 400) is ("error" not in body), f"{where}: {body}"


def fuzz(route):
    method, path = route

    @settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(sent=headers, body=bodies)
    @example(sent={"Origin": "http://["}, body=b'{"name": "Ann"}')
    @example(sent={"Origin": "http://[", "Accept": "text/html"}, body=b"name=Ann")
    @example(sent={"Cookie": GOOD_COOKIE, "Host": "\xff\x00"}, body=b"")
    def run(client, errors, sent, body):
        response, traceback = send(client, method, path, sent, body)
        check(response, traceback, errors, method, path)
        errors.clear()
    return run


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_header_value_makes_a_route_fail(client, errors, route):
    fuzz(route)(client, errors)


@pytest.mark.parametrize("path", ["/", "/logout"])
@pytest.mark.parametrize("accept", [None, "text/html"])
def test_an_unparsable_origin_is_a_foreign_origin(client, errors, path, accept):
    sent = {"Origin": "http://[", "Content-Type": "application/x-www-form-urlencoded", **(
        {"Accept": accept} if accept else {})}
    response, traceback = send(client, "POST", path, sent, b"name=Ann")
    assert response.status_int == 403 and response.json == {"error": "cross-site form posts are refused"}
    assert not traceback and not errors
