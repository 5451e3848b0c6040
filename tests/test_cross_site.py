"""Cross-site form posts are refused (Sec-Fetch-Site, else Origin against the Host);
same-origin posts and API clients that send neither are served."""

import pytest


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "https://evil.example"},  # an older browser: no Fetch Metadata, but an Origin
])
def test_a_cross_site_form_post_is_refused(client, mongo, headers):
    client.post("/", {"name": "Victim"})
    before = list(mongo.find())
    for path in ("/", "/logout"):
        response = client.post(path, {"name": "Attacker"}, headers=headers, status=403)
        assert "Set-Cookie" not in response.headers and response.json["error"]
    assert list(mongo.find()) == before
    assert client.get("/name").json == {"name": "Victim"}


def test_a_cross_site_post_says_why(client):
    response = client.post("/", {"name": "A"}, headers={"Sec-Fetch-Site": "cross-site"}, status=403)
    assert response.json == {"error": "cross-site form posts are refused"}


@pytest.mark.parametrize("headers", [{}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                                     {"Origin": "http://localhost:80"}])
def test_same_origin_posts_and_api_clients_are_served(client, headers):
    assert client.post_json("/", {"name": "A"}, headers=headers).json == {"name": "A"}


@pytest.mark.parametrize("origin", [
    "http://localhost:80.evil.example",  # starts with this host
    "http://evil.localhost:80",  # ends with it
    "http://localhost:80@evil.example",  # userinfo that looks like the host
    "http://localhost:8080",  # another port
    "http://localhost",  # no port, while the Host has one
    "http://xlocalhost:80",
    "http://LOCALHOST:80.evil.example",
    "localhost:80",  # no scheme
    "null",  # a sandboxed frame or a privacy redirect
    "",
    "http://[",  # unparsable: foreign, not a 500
])
def test_an_origin_that_only_looks_like_this_host_is_refused(client, mongo, origin):
    client.post("/", {"name": "Victim"})
    before = list(mongo.find())
    for path in ("/", "/logout"):
        response = client.post(path, {"name": "Attacker"}, headers={"Origin": origin, "Host": "localhost:80"},
                               status=403)
        assert "Set-Cookie" not in response.headers and response.json["error"]
    assert list(mongo.find()) == before
    assert client.get("/name").json == {"name": "Victim"}


def test_an_origin_of_this_very_host_is_served(client):
    response = client.post_json("/", {"name": "A"}, headers={"Origin": "http://example.test:8080",
                                                             "Host": "example.test:8080"})
    assert response.json == {"name": "A"}


def test_fetch_metadata_wins_over_a_matching_origin(client):
    client.post_json("/", {"name": "A"}, headers={"Origin": "http://localhost:80", "Sec-Fetch-Site": "cross-site"},
                     status=403)


@pytest.mark.parametrize("origin, https", [
    ("evil://localhost:80", False),  # another scheme, the same host
    ("https://localhost:80", False),  # claims TLS the request did not come over
    ("http://localhost:80", True),  # a plain-HTTP page posting to this HTTPS site
])
def test_the_origins_scheme_must_be_this_requests(make_client, mongo, origin, https):
    client = make_client(https=https)
    response = client.post_json("/", {"name": "A"}, headers={"Origin": origin, "Host": "localhost:80"}, status=403)
    assert response.json["error"].startswith("cross-site form posts are refused")
    assert mongo.count_documents({}) == 0


def test_a_scheme_mismatch_on_this_very_host_names_the_likely_fix(make_client):
    # Behind a TLS proxy that is not trusted, the browser says https and the request looks like http.
    response = make_client().post_json("/", {"name": "A"}, headers={"Origin": "https://localhost:80",
                                                                  "Host": "localhost:80"}, status=403)
    assert "TRUST_PROXY" in response.json["error"]


def test_an_https_origin_of_an_https_request_is_served(make_client):
    response = make_client(https=True).post_json("/", {"name": "A"}, headers={"Origin": "https://localhost:80",
                                                                            "Host": "localhost:80"})
    assert response.json == {"name": "A"}
