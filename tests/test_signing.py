"""Signing: cookie-signature's format, byte for byte, and secret rotation."""

import ast
import pathlib
import urllib.parse

import pytest

import sessions
from support.basics import SECRET, cookie_value as cookie_of

# Computed independently with Node's crypto, as cookie-signature does:
# val + '.' + createHmac('sha256', secret).update(val).digest('base64').replace(/=+$/, '')
VECTORS = [
    ("abc123", "keyboard cat", "abc123.L3URH8qEUlRhbJErOXuJ/R5i21GJUY02kERb2c2p5w0"),
    ("hello", "tobiiscool", "hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"),
    ("q4oq8fxKwYnzJkNiSzX3r3_RfxV8qljz", "Replace with your secret key",
     "q4oq8fxKwYnzJkNiSzX3r3_RfxV8qljz.MmwDtxV7GIYn1y/0b+HqK1BKsgpdxG+kQ5L+FHMDIvk"),
    ("id-with-ünïcode", "sëcret", "id-with-ünïcode.P482wEF16IG1ZAHPwmmOlVyiDSpIcBUuV6vpbJX7bUY"),
]


@pytest.mark.parametrize("value, secret, signed", VECTORS)
def test_sign_matches_cookie_signature(value, secret, signed):
    assert sessions.sign(value, secret) == signed


def test_a_signature_does_not_depend_on_what_was_signed_before():
    # sign() reuses one HMAC already fed the secret: every signature must start from a copy of it.
    value, secret, signed = VECTORS[0]
    assert sessions.sign("something else", secret) != signed
    assert [sessions.sign(value, secret) for _ in range(3)] == [signed] * 3
    assert sessions.sign(value, "another secret") != signed  # one keyed HMAC per secret


@pytest.mark.parametrize("value, secret, signed", VECTORS)
def test_unsign_accepts_a_known_signature(value, secret, signed):
    assert sessions.unsign(signed, [secret]) == value


def test_set_cookie_value_is_the_express_session_encoding():
    # encodeURIComponent('s:' + signed), from Node: ':' '/' and '+' are escaped.
    header = sessions.format_set_cookie("example.sid", "s:" + VECTORS[2][2], max_age=60, expires=0)
    assert header.startswith("example.sid=s%3Aq4oq8fxKwYnzJkNiSzX3r3_RfxV8qljz."
                             "MmwDtxV7GIYn1y%2F0b%2BHqK1BKsgpdxG%2BkQ5L%2BFHMDIvk; ")


SIGNED = sessions.sign("session-id", "secret-a")
TAMPERINGS = {
    "flip the last byte": lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),
    "flip a byte of the id": lambda s: "S" + s[1:],
    "truncate the signature": lambda s: s[:-3],
    "drop the signature": lambda s: s.rpartition(".")[0],
    "drop the dot": lambda s: s.replace(".", ""),
    "append a byte": lambda s: s + "x",
    "padding added back": lambda s: s + "=",
    "empty": lambda s: "",
    "another id, same signature": lambda s: "other-id." + s.rpartition(".")[2],
    "signed with another secret": lambda s: sessions.sign("session-id", "secret-b"),
}


@pytest.mark.parametrize("transform", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_tampered_values_are_rejected(transform):
    assert sessions.unsign(transform(SIGNED), ["secret-a"]) is None


def test_every_secret_verifies_during_rotation():
    old = sessions.sign("session-id", "old")
    assert sessions.unsign(old, ["new", "old"]) == "session-id"
    assert sessions.unsign(old, ["new"]) is None


def test_ids_carry_at_least_128_random_bits():
    ids = {sessions.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 for i in ids)  # 24 bytes = 192 bits, base64url


@pytest.fixture
def stored_id(interface):
    """A live session's id, stored under the test secret."""
    session = interface.open_session(None)
    session["user"] = {"name": "Ann", "isLoggedIn": True}
    interface.save_session(session)
    return session.id


@pytest.mark.parametrize("prefix", ["", "S:", "s", "x:", "s.", ":"])
def test_a_correctly_signed_id_without_the_s_prefix_is_refused(interface, counted, stored_id, prefix):
    cookie = "example.sid=" + urllib.parse.quote(prefix + sessions.sign(stored_id, SECRET), safe="")
    counted.calls.clear()
    session = interface.open_session(cookie)
    assert session.is_new and session.id != stored_id
    assert counted.calls == []  # refused before any store work


def test_the_same_signed_id_with_the_s_prefix_is_accepted(interface, stored_id):
    cookie = "example.sid=" + urllib.parse.quote("s:" + sessions.sign(stored_id, SECRET), safe="")
    assert interface.open_session(cookie).id == stored_id


def test_the_first_secret_signs_new_cookies_the_others_only_verify(make_interface):
    rotating = make_interface(secrets=("new", "old"))
    session = rotating.open_session(None)
    session["a"] = 1
    header = rotating.save_session(session)
    sent = sessions.parse_cookie_header(cookie_of(header))["example.sid"]
    assert sent == "s:" + sessions.sign(session.id, "new")
    # A cookie signed with the old secret still opens the session...
    old_cookie = "example.sid=" + urllib.parse.quote("s:" + sessions.sign(session.id, "old"), safe="")
    reopened = rotating.open_session(old_cookie)
    assert reopened.id == session.id and reopened == {"a": 1}
    # ...and the cookie sent back for it is signed with the new one.
    reopened["a"] = 2
    resent = sessions.parse_cookie_header(cookie_of(rotating.save_session(reopened)))["example.sid"]
    assert resent == "s:" + sessions.sign(session.id, "new")


def test_a_cookie_signed_only_by_a_retired_secret_is_refused(make_interface):
    before = make_interface(secrets=("old",))
    session = before.open_session(None)
    session["a"] = 1
    cookie = cookie_of(before.save_session(session))
    assert not before.open_session(cookie).is_new
    assert make_interface(secrets=("new",)).open_session(cookie).is_new


def _function_source(module, name):
    """A function's definition as written in the module's file (mutmut renames the
    original to x_<name>__mutmut_orig and puts a trampoline under the name)."""
    tree = ast.parse(pathlib.Path(module.__file__).read_text(encoding="utf-8"))
    found = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
             and node.name in (name, f"x_{name}__mutmut_orig")]
    return found[-1]


def test_signatures_are_compared_with_hmac_compare_digest():
    # == and compare_digest answer alike and differ only in timing, which no test can see:
    # so the code must call hmac.compare_digest, and compare nothing with == or !=.
    unsign = _function_source(sessions, "unsign")
    calls = [ast.unparse(node.func) for node in ast.walk(unsign) if isinstance(node, ast.Call)]
    assert "hmac.compare_digest" in calls
    compares = [op for node in ast.walk(unsign) if isinstance(node, ast.Compare) for op in node.ops]
    assert not any(isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)) for op in compares)


def test_a_value_with_dots_is_signed_and_verified_whole():
    assert sessions.unsign(sessions.sign("a.b.c", "k"), ["k"]) == "a.b.c"

