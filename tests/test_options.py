"""Options are checked once, at construction; the secure defaults are pinned."""

import pytest

import sessions


def make(**options):
    options.setdefault("secrets", ("s",))
    return sessions.Options(**options)


BAD = [
    ({"secrets": ()}, "secrets"),
    ({"secrets": ("",)}, "secrets"),
    ({"secrets": (1,)}, "secrets"),
    ({"cookie_name": "bad name"}, "cookie_name"),
    ({"cookie_name": "a;b"}, "cookie_name"),
    ({"cookie_path": "relative"}, "cookie_path"),
    ({"cookie_path": "/a\r\nSet-Cookie: x=1"}, "cookie_path"),  # header injection
    ({"cookie_path": "/a;b"}, "cookie_path"),
    ({"cookie_domain": "a b"}, "cookie_domain"),
    ({"cookie_secure": "yes"}, "cookie_secure"),
    ({"max_age": 0}, "max_age"),
    ({"max_age": -5}, "max_age"),
    ({"max_age": "60"}, "max_age"),
    ({"max_age": True}, "max_age"),
    ({"absolute_timeout": 0}, "absolute_timeout"),
    ({"touch_after": -1}, "touch_after"),
    ({"max_age": 60, "touch_after": 60}, "touch_after"),
    ({"resave": "no"}, "resave"),
    ({"rolling": 1}, "rolling"),
    ({"save_uninitialized": None}, "save_uninitialized"),
    ({"max_size": 10}, "max_size"),
]


@pytest.mark.parametrize("options, name", BAD)
def test_a_bad_option_fails_at_once_and_names_itself(options, name):
    with pytest.raises(sessions.OptionError) as caught:
        make(**options)
    assert caught.value.option == name
    assert str(caught.value).startswith(name + " must be")


def test_a_misspelt_option_fails_at_once():
    with pytest.raises(TypeError):
        make(maxAge=60)


def test_a_bad_secret_is_never_echoed():
    with pytest.raises(sessions.OptionError) as caught:
        make(secrets=("hunter2", ""))
    assert "hunter2" not in str(caught.value)


def test_options_are_frozen():
    with pytest.raises(AttributeError):
        make().max_age = 1


def test_a_single_secret_string_is_one_secret():
    assert make(secrets="only").secrets == ("only",)


def test_defaults():
    options = make()
    assert options.cookie_name == "example.sid"
    assert options.max_age == 7 * 3600
    assert options.absolute_timeout == 24 * 3600
    assert options.touch_after == 7 * 3600 / 10  # a tenth of max_age
    assert options.max_size == 64 * 1024


def test_secure_defaults_store_no_empty_sessions():
    assert make().save_uninitialized is False


def test_secure_defaults_secure_follows_the_request_scheme():
    assert make().cookie_secure == "auto"


def test_secure_defaults_do_not_rewrite_unchanged_sessions():
    assert make().resave is False and make().rolling is False
