"""Signing: cookie-signature's format, byte for byte, and secret rotation."""

import pytest

import sessions

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
