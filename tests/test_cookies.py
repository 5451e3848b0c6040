"""Parsing the Cookie header as Node's `cookie` module does, and formatting Set-Cookie."""

import datetime

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

import sessions

CASES = [
    ("", {}),
    ("a=1", {"a": "1"}),
    ("a=1; b=2", {"a": "1", "b": "2"}),
    ("a=1;b=2", {"a": "1", "b": "2"}),
    ("a=1; a=2", {"a": "1"}),  # the first occurrence wins
    (" a = 1 ", {"a": "1"}),
    ('a="quoted"', {"a": "quoted"}),
    ("a=s%3Aid.sig", {"a": "s:id.sig"}),  # URL-decoded
    ("a=%E0%A4%A", {"a": "%E0%A4%A"}),  # undecodable: kept raw, like decodeURIComponent failing
    ("a=x=y", {"a": "x=y"}),
    ("junk; a=1", {"a": "1"}),
    ("=novalue; a=1", {"a": "1"}),
    ("a=", {"a": ""}),
    ("\xa0a=1; a=2", {"\xa0a": "1", "a": "2"}),  # Node trims only spaces and tabs
    ("\ta=1\t", {"a": "1"}),
    ("a=s%3Aid%zz", {"a": "s%3Aid%zz"}),  # a bad escape: decodeURIComponent throws, the raw value stays
    ('a="half', {"a": '"half'}),
]


@pytest.mark.parametrize("header, expected", CASES)
def test_parse_cookie_header(header, expected):
    assert sessions.parse_cookie_header(header) == expected


def test_a_json_valued_neighbour_does_not_hide_the_session_cookie():
    # http.cookies.SimpleCookie gives up at the first pair it cannot parse.
    header = 'analytics={"id":"x","v":[1,2]}; example.sid=s%3Aabc.def; theme=dark'
    cookies = sessions.parse_cookie_header(header)
    assert cookies["example.sid"] == "s:abc.def"
    assert cookies["theme"] == "dark"


def test_none_header_is_no_cookies():
    assert sessions.parse_cookie_header(None) == {}


@given(st.text())
def test_parsing_any_header_never_raises(header):
    assert isinstance(sessions.parse_cookie_header(header), dict)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_a_tampered_cookie_is_never_accepted(garbage):
    real = sessions.sign("the-real-id", "secret")
    for candidate in (garbage, real + garbage, garbage + real, real[:-1] + garbage[:1]):
        if candidate != real:
            assert sessions.unsign(candidate, ["secret"]) is None


HOSTILE = st.one_of(st.text(max_size=200), st.text(max_size=200).map("example.sid=".__add__),
                    st.text(max_size=200).map("example.sid=s%3A".__add__))


# The fixture is shared across examples on purpose: no example may ever reach the store.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(HOSTILE)
def test_a_session_never_opens_from_a_hostile_header(interface, counted, header):
    session = interface.open_session(header)
    assert session.is_new and dict(session) == {}
    assert counted.calls == []  # no valid signature: not even a read


def test_set_cookie_has_the_secure_attributes():
    header = sessions.format_set_cookie("sid", "s:a.b", max_age=3600, expires=1_800_003_600)
    assert header == ("sid=s%3Aa.b; Path=/; Expires=Fri, 15 Jan 2027 09:00:00 GMT; Max-Age=3600; "
                      "HttpOnly; SameSite=Lax")


def test_secure_and_domain_when_asked():
    header = sessions.format_set_cookie("sid", "v", max_age=1, expires=0, domain="example.com", secure=True)
    assert "; Domain=example.com; " in header and header.endswith("; HttpOnly; Secure; SameSite=Lax")


@pytest.mark.parametrize("header, expected", [
    ("a=%FF", "%FF"),  # not UTF-8 at all
    ("a=%C3%28", "%C3%28"),  # a broken two-byte sequence
    ("a=%ED%A0%80", "%ED%A0%80"),  # an encoded surrogate: not UTF-8 either
    ("a=s%3Aid.%FF", "s%3Aid.%FF"),  # one bad escape keeps the whole value raw, good escapes too
    ("a=%E2%82", "%E2%82"),  # a truncated sequence
])
def test_a_percent_escape_of_invalid_utf8_stays_raw(header, expected):
    # decodeURIComponent throws a URIError on these, and Node's cookie module then keeps the raw value.
    assert sessions.parse_cookie_header(header) == {"a": expected}


def test_valid_utf8_escapes_are_decoded():
    assert sessions.parse_cookie_header("a=%C3%A9%20x") == {"a": "é x"}


def test_set_cookie_max_age_is_never_negative():
    header = sessions.format_set_cookie("sid", "v", max_age=-5, expires=0)
    assert "; Max-Age=0; " in header


def test_set_cookie_escapes_what_encode_uri_component_escapes():
    header = sessions.format_set_cookie("sid", "a b;c,d/e+f-_.!~*'()", max_age=1, expires=0)
    assert header.startswith("sid=a%20b%3Bc%2Cd%2Fe%2Bf-_.!~*'(); ")


@pytest.mark.parametrize("header, expected", [
    ('a=""', {"a": ""}),  # an empty quoted value
    ("Xa=1", {"Xa": "1"}),
    ("a=X1X", {"a": "X1X"}),
    ("a=\xa01", {"a": "\xa01"}),  # only spaces and tabs are trimmed
    ("a=1\n", {"a": "1\n"}),
])
def test_parse_cookie_header_trims_only_what_node_trims(header, expected):
    assert sessions.parse_cookie_header(header) == expected


@pytest.mark.parametrize("max_age, sent", [(99.4, 100), (99.0004, 99), (99.9996, 100), (0.2, 1), (-3, 0)])
def test_max_age_rounds_up_to_whole_seconds_at_millisecond_precision(max_age, sent):
    # Rounded up, so the cookie never ends before the session; but to the millisecond
    # first, so 99.0004 s (float noise on 99 s) is not a second more.
    header = sessions.format_set_cookie("sid", "v", max_age=max_age, expires=0)
    assert f"; Max-Age={sent}; " in header


@pytest.mark.parametrize("value", [datetime.datetime(2100, 1, 1), datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc),
                                   datetime.datetime(2100, 1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))])
def test_a_stored_date_is_utc_whether_naive_or_aware(value, monkeypatch):
    import time
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # whatever the machine's zone
    time.tzset()
    try:
        assert sessions.to_timestamp(value) == 4_102_444_800.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_iso_dates_round_trip_as_javascript_writes_them():
    assert sessions.to_iso(4_102_444_800.5) == "2100-01-01T00:00:00.500Z"
    assert sessions.from_iso("2100-01-01T00:00:00.500Z") == 4_102_444_800.5
