"""Idle and absolute timeouts, and the lazy touch, with a clock we step."""

import email.utils

import pytest

import sessions
from support.basics import T0, cookie_value

MAX_AGE, ABSOLUTE, TOUCH = 600, 3600, 60  # seconds


@pytest.fixture
def interface(make_interface):
    return make_interface(max_age=MAX_AGE, absolute_timeout=ABSOLUTE, touch_after=TOUCH)


@pytest.fixture
def cookie(interface):
    session = interface.open_session(None)
    session["user"] = {"name": "Ann", "isLoggedIn": True}
    return cookie_value(interface.save_session(session))


def max_age_of(header):
    return int(header.split("Max-Age=")[1].split(";")[0])


def test_a_session_is_served_until_its_idle_timeout(interface, cookie, clock):
    clock.advance(MAX_AGE - 1)
    assert not interface.open_session(cookie).is_new


def test_expired_session_is_not_served(interface, cookie, clock, mongo):
    clock.advance(MAX_AGE)
    # The document is still there (no TTL sweep has run); the read filters it out.
    assert mongo.count_documents({}) == 1
    assert interface.open_session(cookie).is_new


def test_an_unused_session_gets_no_write_and_no_cookie(interface, cookie, clock, counted):
    counted.calls.clear()
    clock.advance(TOUCH - 1)
    assert interface.save_session(interface.open_session(cookie)) is None
    assert counted.calls == ["find_one"]


def test_touch_is_lazy_one_write_per_interval(interface, cookie, clock, counted):
    counted.calls.clear()
    headers = []
    for _ in range(30):  # a request every 10 s for 300 s
        clock.advance(10)
        headers.append(interface.save_session(interface.open_session(cookie)))
    assert counted.writes() == 5  # at 60, 120, 180, 240, 300 s
    assert sum(h is not None for h in headers) == 5  # a cookie only when the expiry moved
    assert all(max_age_of(h) == MAX_AGE for h in headers if h)


def test_the_touch_extends_the_store_and_the_cookie_alike(interface, cookie, clock, mongo):
    clock.advance(TOUCH)
    header = interface.save_session(interface.open_session(cookie))
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == clock.now + MAX_AGE
    assert max_age_of(header) == MAX_AGE
    assert email.utils.formatdate(usegmt=True, timeval=clock.now + MAX_AGE) in header


def test_an_active_session_never_idles_out(interface, cookie, clock):
    for _ in range(50):  # 50 * 59 s = 2950 s, five idle timeouts, under the absolute one
        clock.advance(TOUCH - 1)
        session = interface.open_session(cookie)
        assert not session.is_new
        interface.save_session(session)


def test_the_absolute_timeout_holds_under_continuous_activity(interface, cookie, clock):
    while clock.now < T0 + ABSOLUTE - 30:
        clock.advance(30)
        session = interface.open_session(cookie)
        assert not session.is_new
        interface.save_session(session)
    clock.advance(30)  # exactly the absolute timeout
    assert interface.open_session(cookie).is_new


def test_the_absolute_timeout_holds_even_if_another_writer_extended_expires(interface, cookie, clock, mongo):
    # connect-mongo's touch sets expires = now + maxAge and knows nothing of our deadline.
    mongo.update_one({}, {"$set": {"expires": sessions.to_datetime(T0 + 10 * ABSOLUTE)}})
    clock.advance(ABSOLUTE)
    assert interface.open_session(cookie).is_new


def test_the_cookie_never_outlives_the_absolute_timeout(interface, cookie, clock):
    while clock.now < T0 + ABSOLUTE - 100:  # keep it active up to 100 s before the deadline
        clock.advance(50)
        interface.save_session(interface.open_session(cookie))
    session = interface.open_session(cookie)
    session.touch()
    assert max_age_of(interface.save_session(session)) == 100


def test_touch_forces_an_extension(interface, cookie, clock, counted):
    clock.advance(1)
    session = interface.open_session(cookie)
    session.touch()
    assert interface.save_session(session) is not None
    assert counted.writes() == 2  # the login and the forced touch


def test_a_touch_never_brings_back_a_logged_out_session(interface, cookie, clock, mongo):
    clock.advance(TOUCH)
    session = interface.open_session(cookie)
    mongo.delete_many({})  # a concurrent logout
    assert interface.save_session(session) is None
    assert mongo.count_documents({}) == 0


def test_touch_after_zero_writes_every_request(make_interface, clock, counted):
    interface = make_interface(max_age=MAX_AGE, touch_after=0)
    session = interface.open_session(None)
    session["a"] = 1
    cookie = cookie_value(interface.save_session(session))
    for _ in range(3):
        clock.advance(1)
        interface.save_session(interface.open_session(cookie))
    assert counted.writes() == 4


def test_purge_deletes_only_expired_sessions(interface, cookie, clock, mongo):
    clock.advance(MAX_AGE - 10)
    other = interface.open_session(None)
    other["a"] = 1
    interface.save_session(other)
    clock.advance(10)
    assert interface.store.purge(clock()) == 1
    assert [d["_id"] for d in mongo.find()] == [other.id]


def test_a_session_node_wrote_without_an_absolute_deadline_gets_one_on_rewrite(interface, cookie, clock, mongo):
    doc = mongo.find_one()
    mongo.update_one({}, {"$set": {"session": doc["session"].replace(',"absoluteExpires":"', ',"x":"')}})
    session = interface.open_session(cookie)
    assert session.absolute_expires is None
    session["more"] = 1
    interface.save_session(session)
    assert interface.open_session(cookie).absolute_expires == clock.now + ABSOLUTE


def test_a_touch_never_extends_a_session_that_expired_between_load_and_save(interface, cookie, clock, mongo):
    clock.advance(MAX_AGE - 1)
    session = interface.open_session(cookie)  # still live, and a touch is due
    assert not session.is_new
    clock.advance(2)  # the request was slow: the session expired before its save
    assert interface.save_session(session) is None  # no extension, no cookie
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == T0 + MAX_AGE
    assert interface.open_session(cookie).is_new


def test_a_change_never_revives_a_session_that_expired_between_load_and_save(interface, cookie, clock, mongo):
    clock.advance(MAX_AGE - 1)
    session = interface.open_session(cookie)
    session["cart"] = ["apples"]
    clock.advance(2)
    with pytest.raises(sessions.SessionConflict):
        interface.save_session(session)
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == T0 + MAX_AGE
    assert interface.open_session(cookie).is_new


def test_a_new_session_expires_at_an_absolute_timeout_shorter_than_the_idle_one(make_interface, clock, mongo):
    interface = make_interface(max_age=600, absolute_timeout=300, touch_after=60)
    session = interface.open_session(None)
    session["user"] = {"name": "Ann", "isLoggedIn": True}
    header = interface.save_session(session)
    # A Node peer reads only 'expires': it must already say the earlier deadline.
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == T0 + 300
    assert max_age_of(header) == 300
    assert email.utils.formatdate(usegmt=True, timeval=T0 + 300) in header
    clock.advance(300)
    assert interface.open_session(cookie_value(header)).is_new


def test_a_changed_session_expires_no_later_than_its_absolute_deadline(interface, cookie, clock, mongo):
    clock.advance(ABSOLUTE - 100)
    mongo.update_one({}, {"$set": {"expires": sessions.to_datetime(clock.now + 10)}})  # kept alive until now
    session = interface.open_session(cookie)
    session["cart"] = [1]
    header = interface.save_session(session)
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == T0 + ABSOLUTE
    assert max_age_of(header) == 100


def test_the_touch_interval_is_inclusive(interface, cookie, clock, counted):
    counted.calls.clear()
    clock.advance(TOUCH)  # exactly one interval: the expiry moves by TOUCH seconds, a touch is due
    assert interface.save_session(interface.open_session(cookie)) is not None
    assert counted.writes() == 1


def test_a_session_without_an_absolute_deadline_is_touched_by_the_idle_timeout_alone(interface, cookie, clock, mongo):
    doc = mongo.find_one()
    mongo.update_one({}, {"$set": {"session": doc["session"].replace(',"absoluteExpires":"', ',"x":"')}})
    clock.advance(TOUCH)
    session = interface.open_session(cookie)
    assert session.absolute_expires is None
    assert max_age_of(interface.save_session(session)) == MAX_AGE
    assert sessions.to_timestamp(mongo.find_one()["expires"]) == clock.now + MAX_AGE
