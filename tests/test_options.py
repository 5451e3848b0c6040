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
    ({"cookie_name": "sid\n"}, "cookie_name"),  # a trailing newline would end the Set-Cookie header
    ({"cookie_samesite": "Lax"}, "cookie_samesite"),  # the lower-case names, as express-session stores them
    ({"cookie_samesite": True}, "cookie_samesite"),
    ({"cookie_samesite": "none"}, "cookie_samesite"),  # needs cookie_secure=True
    ({"browser_session_cookie": "yes"}, "browser_session_cookie"),
    ({"id_at_rest": "md5"}, "id_at_rest"),
    ({"cookie_path": "relative"}, "cookie_path"),
    ({"cookie_path": "/a\r\nSet-Cookie: x=1"}, "cookie_path"),  # header injection
    ({"cookie_path": "/a;b"}, "cookie_path"),
    ({"cookie_domain": "a b"}, "cookie_domain"),
    ({"cookie_secure": "yes"}, "cookie_secure"),
    ({"cookie_secure": 1}, "cookie_secure"),  # 1 == True in Python; not an option value here
    ({"cookie_name": "__host-sid"}, "cookie_name"),  # browsers match cookie prefixes case-insensitively
    ({"cookie_name": "__SECURE-sid"}, "cookie_name"),
    ({"cookie_secure": 0}, "cookie_secure"),
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


MESSAGES = [  # the whole message: what is wrong, the rule, the value (never a secret)
    ({"secrets": ()}, "secrets must be a non-empty list of non-empty strings"),
    ({"cookie_name": "a b"}, "cookie_name must be an RFC 6265 token (letters, digits, !#$%&'*+-.^_`|~), got 'a b'"),
    ({"cookie_path": "x"}, "cookie_path must be a path starting with '/', printable ASCII without ';' (RFC 6265), "
                           "got 'x'"),
    ({"cookie_domain": "a b"}, "cookie_domain must be a host name or None, got 'a b'"),
    ({"cookie_secure": "yes"}, "cookie_secure must be True, False or 'auto', got 'yes'"),
    ({"cookie_name": "__Host-sid"}, "cookie_name must be used with cookie_secure=True (and for __Host-: "
                                    "cookie_path '/', no cookie_domain), got '__Host-sid'"),
    ({"max_age": 0}, "max_age must be a positive number of seconds, got 0"),
    ({"absolute_timeout": -1.5}, "absolute_timeout must be a positive number of seconds, got -1.5"),
    ({"max_age": 60, "touch_after": 60}, "touch_after must be a number of seconds from 0 to less than max_age (60), "
                                         "got 60"),
    ({"resave": "no"}, "resave must be True or False, got 'no'"),
    ({"max_size": 10}, "max_size must be a whole number of bytes, at least 256, got 10"),
]


@pytest.mark.parametrize("options, message", MESSAGES)
def test_an_option_error_states_the_rule_and_the_value(options, message):
    with pytest.raises(sessions.OptionError) as caught:
        make(**options)
    assert str(caught.value) == message
    assert caught.value.option == message.split()[0]


@pytest.mark.parametrize("options", [
    {"max_age": 1e-3}, {"max_age": 1e9 - 1}, {"absolute_timeout": 1e-3}, {"absolute_timeout": 999_999_999.5},
    {"max_age": 60, "touch_after": 0}, {"max_age": 60, "touch_after": 59.999},
    {"max_size": 256}, {"max_size": 2**31 - 1},
    {"cookie_path": "/a:b<c>~ d"},  # every printable character but ';'
    {"cookie_domain": "Example.COM"}, {"cookie_domain": "a-b.example"},
    {"cookie_name": "__Host-sid", "cookie_secure": True},
    {"cookie_name": "__Secure-sid", "cookie_secure": True, "cookie_path": "/app", "cookie_domain": "example.com"},
    {"cookie_name": "x__Host-sid"},  # only a prefix counts
])
def test_values_at_the_edge_of_each_rule_are_accepted(options):
    assert make(**options)


@pytest.mark.parametrize("options, name", [
    ({"max_age": 0.0009}, "max_age"), ({"max_age": 1e9}, "max_age"), ({"absolute_timeout": 1e9}, "absolute_timeout"),
    ({"max_age": 60, "touch_after": -0.001}, "touch_after"),
    ({"max_size": 255}, "max_size"), ({"max_size": 2**31}, "max_size"), ({"max_size": 1024.0}, "max_size"),
    ({"max_size": True}, "max_size"),
    ({"cookie_path": "/a\x7f"}, "cookie_path"), ({"cookie_path": "/\x1f"}, "cookie_path"),
    ({"cookie_path": "/é"}, "cookie_path"), ({"cookie_path": None}, "cookie_path"),
    ({"cookie_domain": "exa_mple.com"}, "cookie_domain"), ({"cookie_domain": ""}, "cookie_domain"),
    ({"cookie_name": 5}, "cookie_name"), ({"cookie_name": ""}, "cookie_name"),
    ({"cookie_secure": None}, "cookie_secure"), ({"cookie_secure": "True"}, "cookie_secure"),
    ({"touch_after": True}, "touch_after"),
    ({"cookie_name": "__Host-sid", "cookie_secure": "auto"}, "cookie_name"),
    ({"cookie_name": "__Host-sid", "cookie_secure": False}, "cookie_name"),
    ({"cookie_name": "__Secure-sid", "cookie_secure": "auto"}, "cookie_name"),
    ({"cookie_name": "__Host-sid", "cookie_secure": True, "cookie_path": "/app"}, "cookie_name"),
    ({"cookie_name": "__Host-sid", "cookie_secure": True, "cookie_domain": "example.com"}, "cookie_name"),
])
def test_values_just_past_each_rule_are_refused(options, name):
    with pytest.raises(sessions.OptionError) as caught:
        make(**options)
    assert caught.value.option == name


def test_secrets_keep_their_order():
    assert make(secrets=["new", "old"]).secrets == ("new", "old")


def test_the_new_options_default_to_expresss_defaults_or_safer():
    options = make()
    assert (options.cookie_samesite, options.browser_session_cookie, options.id_at_rest) == ("lax", False, "plain")
