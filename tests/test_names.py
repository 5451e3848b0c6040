"""Login names follow RFC 8266, the PRECIS Nickname profile (precis-i18n): what it
refuses is a 400 that says why and stores nothing; what it maps (spaces, width,
compatibility forms) is stored mapped.  In-process."""

import pytest

INVISIBLE_OR_LOOKALIKE = {  # characters that hide in a name or make it pass for another, by kind
    "combining grapheme joiner": "ad\u034fmin",
    "variation selector 16": "admin\ufe0f",
    "variation selector 1": "adm\ufe00in",
    "variation selector 17 (supplementary)": "admin\U000e0100",
    "hangul filler": "\u3164",
    "hangul filler inside": "ad\u3164min",
    "hangul choseong filler": "\u115fadmin",
    "hangul jungseong filler": "ad\u1160min",
    "halfwidth hangul filler": "\uffa0admin",
    "private use": "adm\ue000in",
    "private use, plane 15": "admin\U000f0000",
    "unassigned": "adm\u0378in",
    "noncharacter": "admin\ufdd0",
    "noncharacter at a plane's end": "admin\ufffe",
    "zero-width space": "ad\u200bmin",
    "zero-width joiner": "ad\u200dmin",
    "right-to-left override": "admin\u202e",
    "soft hyphen": "ad\u00admin",
    "word joiner": "ad\u2060min",
    "control": "ad\x07min",
    "line break": "ad\nmin",
    "tag character": "admin\U000e0041",
    "lone surrogate": "ad\ud800min",
}

MAPPED = {  # what the profile makes of a name, and what is then stored
    "Ann\u00a0Lee": "Ann Lee",  # no-break space: a space
    "Ann\u2003Lee": "Ann Lee",  # em space
    "Ann\u3000Lee": "Ann Lee",  # ideographic space
    "  Ann   Lee  ": "Ann Lee",  # trimmed, inner runs of spaces collapsed
    "\uff21\uff4e\uff4e": "Ann",  # full-width letters
    "\ufb01ona": "fiona",  # the fi ligature
    "\u210c": "H",  # a mathematical letter: its plain form
    "Zoe\u0308": "Zo\u00eb",  # composed (NFKC)
    "Bea \U0001f680": "Bea \U0001f680",  # symbols and emoji are names too
    "\u05d0\u05d1\u05d2": "\u05d0\u05d1\u05d2",  # right-to-left scripts are names too
}


@pytest.mark.parametrize("name", INVISIBLE_OR_LOOKALIKE.values(), ids=INVISIBLE_OR_LOOKALIKE.keys())
def test_an_invisible_or_disallowed_character_is_a_400_that_says_why(client, counted, name):
    response = client.post_json("/", {"name": name}, status=400)
    error = response.json["error"]
    assert error.startswith("name ") and "RFC 8266" in error, error
    assert counted.writes() == 0 and "Set-Cookie" not in response.headers


@pytest.mark.parametrize("sent, stored", MAPPED.items())
def test_a_name_is_stored_as_the_profile_maps_it(client, sent, stored):
    assert client.post_json("/", {"name": sent}).json == {"name": stored}
    assert client.get("/name").json == {"name": stored}


def test_the_error_names_the_code_point_and_the_kind():
    import service
    import bottle
    with pytest.raises(bottle.HTTPError) as caught:
        service.check_name("ad\u200bmin")
    assert caught.value.body == ("name must not contain U+200B, an invisible character "
                                 "(RFC 8266 nickname rules)")


def test_the_braille_blank_is_a_symbol_the_profile_allows(client):
    # U+2800 has no dots but is a symbol (So), which RFC 8266 allows; docs/security.md says so.
    assert client.post_json("/", {"name": "\u2800"}).json == {"name": "\u2800"}


def test_a_name_of_spaces_only_is_empty_after_mapping(client):
    response = client.post_json("/", {"name": " \u00a0\u2003\u3000 "}, status=400)
    assert response.json == {"error": "name must be a string of 1 to 100 characters"}


@pytest.mark.parametrize("length, ok", [(100, True), (101, False)])
def test_at_most_100_characters_after_mapping(client, length, ok):
    response = client.post_json("/", {"name": "\uff41" * length}, status=200 if ok else 400)  # full-width a
    assert (response.json == {"name": "a" * length}) if ok else "100" in response.json["error"]
