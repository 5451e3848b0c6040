"""What POST / accepts: bad bodies and names change nothing and get an exact JSON error;
the body cap to the exact byte; content types; JSON nested too deep."""

import json

import pytest

import service
from support.app import login


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


def test_a_failed_form_login_writes_nothing_even_when_a_touch_is_due(client, clock, counted):
    login(client)
    clock.advance(3000)  # past the touch interval
    counted.calls.clear()
    response = client.post("/", {"name": " "}, headers={"Accept": "text/html"}, status=400)
    assert "Set-Cookie" not in response.headers
    assert counted.writes() == 0 and counted.deletes() == 0


def test_json_nested_too_deep_is_a_400(client):
    response = client.post("/", "[" * 5000, content_type="application/json", status=400)
    assert response.json["error"] == "the body is not valid JSON"


def test_a_lone_surrogate_name_is_a_400(client, mongo):
    client.post("/", '{"name": "\\ud800"}', content_type="application/json", status=400)
    assert mongo.count_documents({}) == 0


def test_a_name_of_exactly_100_characters_is_accepted(client):
    assert login(client, "é" * 100).json == {"name": "é" * 100}


# --- exact error answers ---

@pytest.mark.parametrize("body, kind, error", [
    ("Alice", "text/plain", "send application/json or application/x-www-form-urlencoded"),
    ("{not json", "application/json", "the body is not valid JSON"),
    (b"name=\xff", "application/x-www-form-urlencoded", "the body is not valid form data"),
    ('{"name": ""}', "application/json", "name must be a string of 1 to 100 characters"),
    ('{"name": 42}', "application/json", "name must be a string of 1 to 100 characters"),
    ("name=&name=Bob", "application/x-www-form-urlencoded", "name must be a string of 1 to 100 characters"),
    # RFC 8266 names the first character it refuses, and what kind it is.
    ('{"name": "A\\u0000B"}', "application/json",
     "name must not contain U+0000, a control character (RFC 8266 nickname rules)"),
    ('{"name": "A\\u202eB"}', "application/json",
     "name must not contain U+202E, an invisible character (RFC 8266 nickname rules)"),
    ('{"name": "A\\ud800"}', "application/json",
     "name must not contain U+D800, an unpaired surrogate (RFC 8266 nickname rules)"),
    ('{"name": "A\\u0007\\u200bB"}', "application/json",
     "name must not contain U+0007, a control character (RFC 8266 nickname rules)"),
])
def test_a_bad_login_says_exactly_what_is_wrong(client, body, kind, error):
    response = client.post("/", body, content_type=kind, expect_errors=True)
    assert response.status_int in (400, 415)
    assert response.json == {"error": error}


def test_a_request_without_a_content_type_is_415():
    import io
    import bottle
    with pytest.raises(bottle.HTTPError) as caught:
        service.read_name({"wsgi.input": io.BytesIO(b"name=A")})
    assert caught.value.status_code == 415


# --- the body cap: 16384 bytes, declared or not ---

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


# --- content types: a charset, any case ---

def test_a_json_login_with_a_charset_is_accepted(client):
    response = client.post("/", '{"name": "A"}', content_type="application/json; charset=utf-8")
    assert response.json == {"name": "A"}


@pytest.mark.parametrize("content_type", ["Application/JSON", "APPLICATION/JSON; charset=UTF-8"])
def test_media_types_are_case_insensitive(client, content_type):
    # RFC 9110 section 8.3.1: the type and subtype are case-insensitive.
    assert client.post("/", '{"name": "A"}', content_type=content_type).json == {"name": "A"}


def test_a_form_escape_that_is_not_utf8_is_a_400_not_a_replacement_character(client, mongo):
    response = client.post("/", "name=%ff%fe", content_type="application/x-www-form-urlencoded", status=400)
    assert response.json == {"error": "the body is not valid form data"}
    assert mongo.count_documents({}) == 0
