"""What counts as a change to a session (a JSON snapshot taken at load, compared at save),
a session saved twice in one request, and the flags of a new or a loaded session."""

import json

import pytest

import sessions
from support.basics import SECRET
from support.library import login


# --- what counts as a change ---

def test_a_loaded_session_is_unchanged(interface):
    _, cookie = login(interface)
    assert interface.open_session(cookie).modified is False


def test_a_loaded_session_with_lists_is_unchanged(interface):
    _, cookie = login(interface, {"cart": [1, [2, {"a": [3]}]], "tags": []})
    assert interface.open_session(cookie).modified is False


@pytest.mark.parametrize("edit", [
    lambda s: s.__setitem__("cart", []),
    lambda s: s["user"].__setitem__("name", "Bob"),  # nested
    lambda s: s.pop("user"),
    lambda s: s.update(user={"name": "Ann", "isLoggedIn": False}),
    lambda s: s.clear(),
    lambda s: s["cart"].append(3),  # a list, edited in place
    lambda s: s["cart"].__setitem__(0, 9),  # same length, another item
    lambda s: s["cart"].__setitem__(0, 1.0),  # same value to Python, another JSON type
    lambda s: s["cart"].pop(),
    lambda s: s["nested"]["list"].append({}),
])
def test_every_kind_of_edit_is_seen(interface, edit):
    _, cookie = login(interface, {"user": {"name": "Ann", "isLoggedIn": True}, "cart": [1, 2],
                                  "nested": {"list": [[]]}})
    session = interface.open_session(cookie)
    edit(session)
    assert session.modified


@pytest.mark.parametrize("before, after", [(1, True), (1, 1.0), (0, False), ("1", 1)])
def test_a_change_of_json_type_is_a_change(interface, before, after):
    # Python says 1 == True == 1.0; JSON (and the next reader) does not.
    _, cookie = login(interface, {"n": before})
    session = interface.open_session(cookie)
    session["n"] = after
    assert session.modified
    interface.save_session(session)
    assert type(interface.open_session(cookie)["n"]) is type(json.loads(json.dumps(after)))


def test_setting_the_same_value_is_no_change(interface):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session["user"] = {"isLoggedIn": True, "name": "Ann"}
    assert not session.modified


def test_a_value_that_is_not_json_is_a_change_refused_at_save(interface):
    import datetime
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session["when"] = datetime.date(2026, 12, 1)
    assert session.modified is True
    with pytest.raises(sessions.SessionDataError):
        interface.save_session(session)


def test_a_nested_change_is_saved(interface, mongo):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session["user"]["name"] = "Bob"
    assert interface.save_session(session) is not None
    assert interface.open_session(cookie)["user"]["name"] == "Bob"


# --- a session saved twice in one request ---

def test_a_new_session_is_unchanged_once_stored(interface, counted):
    session = interface.open_session(None)
    session["cart"] = [1]
    interface.save_session(session)  # inserted
    assert session.modified is False and session.stored is not None
    counted.calls.clear()
    interface.save_session(session)  # saving again in the same request writes nothing
    assert counted.calls == []


def test_a_changed_session_is_unchanged_once_saved(interface, counted):
    _, cookie = login(interface)
    session = interface.open_session(cookie)
    session["cart"] = [1]
    interface.save_session(session)
    assert session.modified is False
    counted.calls.clear()
    interface.save_session(session)  # saving again writes nothing
    assert counted.writes() == 0


def test_after_a_save_changes_are_found_against_what_was_saved_not_what_was_loaded(interface, counted):
    _, cookie = login(interface, {"n": 1})
    session = interface.open_session(cookie)
    session.regenerate()
    session["n"] = 2
    interface.save_session(session)  # inserted under the new id: {"n": 2}
    session["n"] = 1  # what was loaded, no longer what is stored
    assert session.modified is True
    counted.calls.clear()
    interface.save_session(session)
    assert counted.writes() == 1
    new_cookie = f"{interface.options.cookie_name}=" + sessions.urllib.parse.quote(
        "s:" + sessions.sign(session.id, SECRET), safe="")
    assert interface.open_session(new_cookie)["n"] == 1


# --- the flags of a new and a loaded session ---

def test_a_new_sessions_flags_are_false(interface):
    session = interface.open_session(None)
    assert session.is_new is True
    assert session.destroyed is False and session.touched is False and session.regenerated is False
    assert session.modified is False


def test_a_loaded_session_is_not_new_and_a_saved_one_is_unchanged(interface):
    session, cookie = login(interface)
    assert session.is_new is False  # stored now
    loaded = interface.open_session(cookie)
    assert loaded.is_new is False and loaded.cookie_id == loaded.id == session.id
    assert session.modified is False and loaded.modified is False
