"""The teaching page at GET /, and form posts from a browser."""

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
    assert response.headers["Location"].endswith("/")
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
    assert "ISODate(" in page and "&quot;isLoggedIn&quot;:true" in page
    assert "idle: gone in 7 h 00 min" in page and "absolute: ends in 24 h 00 min" in page  # the clock stands still
    assert "HttpOnly" in page


def test_a_wrongly_signed_cookie_is_shown_as_not_verified(client):
    cookie = "example.sid=s%3A" + sessions.sign("someone-else", "not-our-secret")
    page = client.get("/", headers={"Cookie": cookie}).text
    assert "did not verify" in page and "names no live session" in page


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
    assert "Cookie <code>visit</code> as sent" in page
    assert f'expires: ISODate("{sessions.to_iso(clock() + 7 * 3600)}")' in page
