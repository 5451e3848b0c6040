"""The teaching page at GET /, and form posts from a browser."""

from urllib.parse import urlsplit

import pytest

import sessions
from support.basics import cookie_value

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_logged_out_page_shows_the_form_and_no_cookie(client, counted):
    page = client.get("/")
    assert page.content_type == "text/html"
    assert '<form method="post" action="/">' in page.text and 'name="name"' in page.text
    assert "sent no session cookie" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert counted.calls == []


def test_a_form_login_redirects_back_with_the_cookie(client):
    response = client.post("/", {"name": "Ann"}, headers=BROWSER, status=303)
    assert urlsplit(response.headers["Location"]).path == "/"  # back to the page, saying what was done
    assert "HttpOnly" in response.headers["Set-Cookie"]
    page = client.get("/")
    assert "Signed in as <strong>Ann</strong>" in page.text
    assert '<form method="post" action="/logout">' in page.text


def test_the_panel_shows_the_parts_but_never_a_whole_id_or_signature(client):
    client.post("/", {"name": "Ann"}, headers=BROWSER)
    raw = sessions.parse_cookie_header(cookie_value(client.get("/name").request.headers["Cookie"]))
    sid, _, signature = raw["example.sid"][2:].rpartition(".")
    page = client.get("/").text
    assert f"id <code>{sid[:6]}&hellip;</code>" in page
    assert f"signature <code>{signature[:6]}&hellip;</code>" in page
    assert "the signature verified" in page
    assert sid not in page and signature[:12] not in page
    assert "ISODate(" in page and "&quot;isLoggedIn&quot;: true" in page  # the stored JSON, laid out
    assert "in 7 h 00 min, unless used" in page and "in 24 h 00 min, however active" in page  # the clock stands still
    assert "HttpOnly" in page


def test_a_wrongly_signed_cookie_is_shown_as_not_verified(client):
    cookie = "example.sid=s%3A" + sessions.sign("someone-else", "not-our-secret")
    page = client.get("/", headers={"Cookie": cookie}).text
    assert "the signature did not verify" in page and "this server did not issue this cookie" in page


def test_html_in_a_name_is_shown_as_text(client):
    client.post("/", {"name": "<script>alert(1)</script>"}, headers=BROWSER)
    page = client.get("/").text
    assert "<script>" not in page
    assert "Signed in as <strong>&lt;script&gt;alert(1)&lt;/script&gt;</strong>" in page


def test_a_failed_form_login_reshows_the_page_with_the_error(client, mongo):
    page = client.post("/", {"name": "   "}, headers=BROWSER, status=400)
    assert page.content_type == "text/html"
    assert 'class="error"' in page.text and "name must be a string" in page.text
    assert mongo.count_documents({}) == 0


def test_a_form_logout_redirects_back(client, mongo):
    client.post("/", {"name": "Ann"}, headers=BROWSER)
    response = client.post("/logout", headers=BROWSER, status=303)
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert mongo.count_documents({}) == 0
    assert "sent no session cookie" in client.get("/").text


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/html;q=0.5"])
def test_other_clients_keep_the_json_api(client, accept):
    headers = {"Accept": accept} if accept else {}
    assert client.post("/", {"name": "Ann"}, headers=headers).json == {"name": "Ann"}
    assert client.post("/logout", headers=headers).json == {"loggedOut": True}


@pytest.mark.parametrize("accept, html", [
    ("text/html", True), ("text/html;q=0.9, application/json;q=0.8", True), ("text/*", True),
    ("*/*", False), ("", False), ("application/json", False), ("text/html;q=bogus", False)])
def test_prefers_html(accept, html):
    import service
    assert service.prefers_html(accept) is html


def test_the_panel_names_the_cookie_and_the_stored_expiry(make_client, interface, clock):
    client = make_client(cookie_name="visit")
    client.post("/", {"name": "Ann"}, headers=BROWSER)
    page = client.get("/").text
    assert "Cookie <code>visit</code>, as your browser sent it" in page
    assert f'expires: ISODate("{sessions.to_iso(clock() + 7 * 3600)}")' in page


# --- the page teaches on its own: what just happened, each part, when it ends, why "no session" ---

def test_after_a_login_the_page_says_what_the_login_did(client):
    response = client.post("/", {"name": "Ann"}, headers=BROWSER, status=303)
    page = client.get(response.headers["Location"]).text
    assert "You signed in: whatever session your browser had was deleted" in page
    assert "fresh random id" in page


def test_after_a_logout_the_page_says_the_document_was_deleted_and_the_cookie_forgotten(client):
    client.post("/", {"name": "Ann"}, headers=BROWSER)
    response = client.post("/logout", headers=BROWSER, status=303)
    page = client.get(response.headers["Location"]).text
    assert "the document was deleted and your browser was told to forget the cookie" in page
    assert "Your browser sent no session cookie." in page


def test_each_part_of_the_cookie_says_what_it_is_for(client):
    client.post("/", {"name": "Ann"}, headers=BROWSER)
    page = client.get("/").text
    assert "this value is signed by the server" in page  # s:
    assert "a random name (192 bits) for the document the server" in page  # the id
    assert "proof that this server issued the id" in page and "constant time" in page  # the signature


def test_both_lifetimes_are_shown_as_a_timeline(client, clock):
    client.post("/", {"name": "Ann"}, headers=BROWSER)
    clock.advance(3600)
    page = client.get("/").text
    for row in ("<td>signed in</td>", "<td>now</td>", "<td>idle deadline</td>", "<td>absolute deadline</td>"):
        assert row in page
    assert "ends between 6 h 18 min and 7 h 00 min after your last request" in page
    assert "extended its idle deadline (a touch)" in page  # an hour on: this request extends it


def test_a_logged_out_cookie_is_no_session_and_the_page_says_why(client):
    client.post("/", {"name": "Ann"}, headers=BROWSER)
    cookie = client.cookies["example.sid"]
    client.post("/logout", headers=BROWSER)
    page = client.get("/", headers={"Cookie": f"example.sid={cookie}"}).text
    assert "the signature verified" in page and "this cookie names no live session" in page


def test_the_stored_document_is_laid_out_to_wrap_at_word_boundaries(client):
    client.post("/", {"name": "Ann"}, headers=BROWSER)
    page = client.get("/").text
    stored = page.split("<pre>", 1)[1].split("</pre>", 1)[0]
    assert max(len(line) for line in stored.splitlines()) < 80  # short lines, laid out, not one long string
    assert "word-break: break-all" not in page and "overflow-wrap: break-word" in page


def test_your_sessions_are_listed_with_a_button_each(make_client, clock):
    phone, laptop = make_client(), make_client()
    phone.post("/", {"name": "Ann"}, headers={**BROWSER, "User-Agent": "Phone"})
    clock.advance(1)
    laptop.post("/", {"name": "Ann"}, headers={**BROWSER, "User-Agent": "Laptop"})
    page = laptop.get("/").text
    assert "Your sessions" in page and "Phone" in page and "Laptop" in page and "(this browser)" in page
    assert page.count('action="/sessions/end"><input type="hidden" name="handle"') == 2
    assert "End all other sessions" in page and "sessions under this name" in page


def test_the_page_during_a_store_outage_is_an_html_503_that_says_what_happened(make_client):
    from support.mongo import DownCollection
    down = make_client(DownCollection())
    cookie = "example.sid=s%3A" + sessions.sign("some-id", "test-secret").replace("/", "%2F").replace("+", "%2B")
    page = down.get("/", headers={**BROWSER, "Cookie": cookie}, status=503)
    assert page.content_type == "text/html" and "The session store is unavailable" in page.text
    assert "503 Service Unavailable" in page.text and page.headers["Content-Security-Policy"]
    api = down.get("/", headers={"Accept": "application/json", "Cookie": cookie}, status=503)
    assert api.json == {"error": "the session store is unavailable; try again shortly"}
