"""Cookie settings, service-wide (Options) and per session: SameSite, browser-session
cookies, "remember me", Secure over plain HTTP, the cookie's path, and when the
cookie is sent again (resave, rolling).  In-process, with a stepped clock."""

import json
import logging
import re

import pytest

import sessions
from support.basics import SECRET, T0, cookie_value

DAY = 24 * 3600


def stored(mongo):
    return json.loads(mongo.find_one()["session"])


def max_age_of(header):
    found = re.search(r"Max-Age=(\d+)", header)
    return found and int(found.group(1))


def log_in(interface, **request):
    session = interface.open_session(None, **request)
    session["user"] = "ann"
    return session, interface.save_session(session)


# --- SameSite ---

@pytest.mark.parametrize("samesite, attribute", [("lax", "Lax"), ("strict", "Strict")])
def test_samesite_is_written_to_the_cookie_and_the_document(make_interface, mongo, samesite, attribute):
    interface = make_interface(cookie_samesite=samesite)
    _, header = log_in(interface)
    assert header.endswith(f"; SameSite={attribute}")
    assert stored(mongo)["cookie"]["sameSite"] == samesite


def test_samesite_none_needs_secure_and_then_says_so(make_interface, mongo):
    with pytest.raises(sessions.OptionError, match="^cookie_samesite must be 'none' only with cookie_secure=True"):
        sessions.Options(secrets=(SECRET,), cookie_samesite="none")
    interface = make_interface(cookie_samesite="none", cookie_secure=True)
    _, header = log_in(interface, https=True)
    assert header.endswith("; Secure; SameSite=None")


# --- browser-session cookies: no Expires, the server's timeouts still hold ---

def test_a_browser_session_cookie_has_no_expiry_but_the_store_still_ends_it(make_interface, mongo, clock):
    interface = make_interface(browser_session_cookie=True, max_age=600, touch_after=60)
    session, header = log_in(interface)
    assert "Expires=" not in header and "Max-Age=" not in header  # gone when the browser closes
    assert stored(mongo)["cookie"]["originalMaxAge"] is None and stored(mongo)["cookie"]["expires"] is None
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == T0 + 600  # the idle timeout, in the store
    cookie = cookie_value(header)
    clock.advance(599)
    assert interface.open_session(cookie)["user"] == "ann"  # used: a lazy touch extends it...
    assert interface.save_session(interface.open_session(cookie)) is None  # ...with no cookie to refresh
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == T0 + 599 + 600
    clock.advance(600)
    assert interface.open_session(cookie).is_new  # unused for max_age: gone, browser open or not


def test_a_route_can_make_one_session_a_browser_session(make_interface, mongo):
    interface = make_interface()
    session = interface.open_session(None)
    session["user"] = "ann"
    session.max_age = None  # express: req.session.cookie.maxAge = null
    header = interface.save_session(session)
    assert "Expires=" not in header and stored(mongo)["cookie"]["originalMaxAge"] is None
    assert interface.open_session(cookie_value(header)).max_age is None  # it stays one


# --- "remember me": one session's own lifetime ---

def test_remember_me_gives_one_session_its_own_max_age(make_interface, mongo, clock):
    interface = make_interface()  # 7 h idle, 24 h absolute
    session = interface.open_session(None)
    session["user"] = "ann"
    session.max_age = 30 * DAY  # express: req.session.cookie.maxAge = 30 days in ms
    header = interface.save_session(session)
    assert max_age_of(header) == 30 * DAY
    assert stored(mongo)["cookie"]["originalMaxAge"] == 30 * DAY * 1000  # milliseconds, as Node reads it
    # A longer max_age than the service's also lengthens the absolute timeout to it.
    assert stored(mongo)["absoluteExpires"] == sessions.to_iso(T0 + 30 * DAY)
    clock.advance(29 * DAY)
    loaded = interface.open_session(cookie_value(header))
    assert loaded["user"] == "ann" and loaded.max_age == 30 * DAY  # read back from originalMaxAge
    clock.advance(DAY)
    assert interface.open_session(cookie_value(header)).is_new


def test_other_sessions_keep_the_service_wide_max_age(make_interface, mongo):
    interface = make_interface()
    _, header = log_in(interface)
    assert max_age_of(header) == 7 * 3600 and stored(mongo)["cookie"]["originalMaxAge"] == 7 * 3600 * 1000


def test_changing_max_age_of_a_stored_session_is_a_change_that_is_saved(make_interface, mongo, clock):
    interface = make_interface()
    _, header = log_in(interface)
    session = interface.open_session(cookie_value(header))
    session.max_age = 3600
    assert session.modified
    assert max_age_of(interface.save_session(session)) == 3600
    assert stored(mongo)["cookie"]["originalMaxAge"] == 3600 * 1000
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == T0 + 3600


def test_a_node_sessions_own_max_age_is_honoured(make_interface, mongo, clock):
    interface = make_interface()
    _, header = log_in(interface)
    data = stored(mongo)
    data["cookie"]["originalMaxAge"] = 120_000  # a Node route set req.session.cookie.maxAge = 2 min
    mongo.update_one({}, {"$set": {"session": json.dumps(data)}})
    session = interface.open_session(cookie_value(header))
    assert session.max_age == 120
    session["seen"] = True
    interface.save_session(session)
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == T0 + 120


# --- Secure over plain HTTP: no session the browser would never send back ---

def test_a_login_over_plain_http_with_secure_required_stores_nothing_and_says_why(make_interface, counted, caplog):
    interface = make_interface(cookie_secure=True)
    session = interface.open_session(None, https=False)
    session["user"] = "ann"
    with caplog.at_level(logging.WARNING, logger="sessions"):
        with pytest.raises(sessions.InsecureTransport):
            interface.save_session(session)
        again = interface.open_session(None, https=False)
        again["user"] = "bob"
        with pytest.raises(sessions.InsecureTransport):
            interface.save_session(again)
    assert counted.writes() == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "sessions"]
    assert len(warnings) == 1 and "TRUST_PROXY" in warnings[0]  # one warning, not one per request


def test_an_uninitialized_session_over_plain_http_with_secure_required_is_simply_not_stored(make_interface,
                                                                                              counted):
    interface = make_interface(cookie_secure=True, save_uninitialized=True)
    assert interface.save_session(interface.open_session(None, https=False)) is None
    assert counted.writes() == 0


def test_the_same_login_over_https_is_stored(make_interface, mongo):
    interface = make_interface(cookie_secure=True)
    _, header = log_in(interface, https=True)
    assert "; Secure" in header and mongo.count_documents({}) == 1


# --- the cookie's path: outside it, no session at all ---

@pytest.mark.parametrize("path, inside", [("/app", True), ("/app/", True), ("/app/cart", True),
                                          ("/apple", False), ("/", False), ("/other/app", False)])
def test_only_requests_inside_the_cookie_path_get_a_stored_session(make_interface, counted, path, inside):
    interface = make_interface(cookie_path="/app")
    signed = "example.sid=s%3A" + sessions.sign("some-id", SECRET)
    session = interface.open_session(signed, path=path)
    assert (counted.reads() == 1) is inside  # outside: not even read (RFC 6265 section 5.1.4 path-match)
    session["x"] = 1
    assert (interface.save_session(session) is not None) is inside
    assert counted.writes() == (1 if inside else 0)


# --- when the cookie is sent again ---

def test_resave_rewrites_the_store_but_sends_no_cookie_for_an_unchanged_session(make_interface, counted):
    interface = make_interface(resave=True)
    _, header = log_in(interface)
    counted.calls.clear()
    assert interface.save_session(interface.open_session(cookie_value(header))) is None  # express: rolling decides
    assert counted.writes() == 1


def test_rolling_resends_the_stored_expiry_not_a_new_one(make_interface, counted, clock):
    interface = make_interface(rolling=True)
    _, header = log_in(interface)
    counted.calls.clear()
    clock.advance(60)  # inside the touch interval: nothing written
    again = interface.save_session(interface.open_session(cookie_value(header)))
    assert max_age_of(again) == 7 * 3600 - 60  # what the store keeps, not now + max_age
    assert counted.writes() == 0


def test_a_session_saved_twice_keeps_a_nested_edit_made_between(make_interface, mongo):
    interface = make_interface()
    session = interface.open_session(None)
    session["cart"] = {"items": ["tea"]}
    interface.save_session(session)
    session["cart"]["items"].append("milk")  # a nested edit after the first save
    interface.save_session(session)
    assert stored(mongo)["cart"] == {"items": ["tea", "milk"]}


def test_a_session_max_age_shorter_than_the_touch_interval_is_kept_alive_by_use(make_interface, clock):
    interface = make_interface()  # touch_after 42 min
    session = interface.open_session(None)
    session["user"] = "ann"
    session.max_age = 600  # 10 minutes
    cookie = cookie_value(interface.save_session(session))
    for _ in range(30):  # read every minute for half an hour: used, so never gone
        clock.advance(60)
        loaded = interface.open_session(cookie)
        assert loaded["user"] == "ann"
        interface.save_session(loaded)


def test_unticking_remember_me_shortens_the_absolute_deadline_again(make_interface, mongo, clock):
    interface = make_interface()
    session = interface.open_session(None)
    session["user"] = "ann"
    session.max_age = 30 * DAY
    cookie = cookie_value(interface.save_session(session))
    loaded = interface.open_session(cookie)
    loaded.max_age = 7 * 3600  # back to the service's own
    interface.save_session(loaded)
    assert stored(mongo)["absoluteExpires"] == sessions.to_iso(T0 + DAY)
