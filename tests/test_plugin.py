"""SessionPlugin in your own routes: the README's prototype, run as it is printed."""

import os
import re

import bottle
import pytest
import webtest

import service
import sessions
from conftest import SECRET, cookie_value

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_prototype():
    """The Python block under the README's "Sessions in your own routes" heading, as printed."""
    with open(README, encoding="utf-8") as readme:
        text = readme.read()
    section = text.split("## Sessions in your own routes", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def prototype():
    namespace = {"__name__": "prototype"}  # not "__main__": the example's server stays off
    exec(compile(readme_prototype(), "README.md", "exec"), namespace)
    return namespace


def test_the_readme_prototype_is_short():
    lines = [line for line in readme_prototype().splitlines() if line.strip()]
    assert len(lines) <= 20


def test_the_readme_prototype_keeps_a_cart_per_visitor(prototype):
    ann, bob = webtest.TestApp(prototype["app"]), webtest.TestApp(prototype["app"])
    assert ann.get("/cart").json == {"cart": []}
    assert ann.post_json("/cart", {"item": "tea"}).json == {"cart": ["tea"]}
    assert ann.post_json("/cart", {"item": "milk"}).json == {"cart": ["tea", "milk"]}
    assert bob.get("/cart").json == {"cart": []}  # no cookie, no cart
    assert ann.get("/cart").json == {"cart": ["tea", "milk"]}


def test_the_readme_prototype_refuses_a_bad_item_and_stores_nothing(prototype):
    client = webtest.TestApp(prototype["app"])
    response = client.post_json("/cart", {"item": 7}, status=400)
    assert "Set-Cookie" not in response.headers
    assert len(prototype["store"]) == 0


class EndsBeforeSave(sessions.MemoryStore):
    """A store on which every session is logged out between a request's load and its save."""

    def compare_and_set(self, sid, *args):
        self.delete(sid)
        return super().compare_and_set(sid, *args)


def test_a_change_to_a_session_that_ended_meanwhile_is_a_409_not_a_resurrection():
    store = EndsBeforeSave()
    app = bottle.Bottle()
    app.install(service.SessionPlugin(sessions.SessionInterface(store, sessions.Options(secrets=(SECRET,)))))

    @app.post("/count")
    def count(session):
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}

    client = webtest.TestApp(app)
    client.post("/count")  # a new session: inserted
    response = client.post("/count", status=409)
    assert "ended" in response.text
    assert len(store) == 0  # the logout stays a logout


def test_a_session_route_of_your_own_is_not_cacheable(prototype):
    for response in (webtest.TestApp(prototype["app"]).get("/cart"),
                     webtest.TestApp(prototype["app"]).post_json("/cart", {"item": "tea"})):
        assert response.headers["Cache-Control"] == "no-store" and response.headers["Vary"] == "Cookie"


def test_routes_without_a_session_parameter_do_no_session_work():
    calls = []

    class Counting(sessions.MemoryStore):
        def load(self, *args):
            calls.append(args)
            return super().load(*args)

    app = bottle.Bottle()
    app.install(service.SessionPlugin(sessions.SessionInterface(Counting(), sessions.Options(secrets=(SECRET,)))))
    app.get("/plain")(lambda: {"ok": True})
    signed = "s%3A" + sessions.sign("some-id", SECRET)
    response = webtest.TestApp(app).get("/plain", headers={"Cookie": f"example.sid={signed}"})
    assert response.json == {"ok": True} and calls == []
    assert "Cache-Control" not in response.headers  # the plugin left this route alone


def test_the_plugin_saves_before_the_response_leaves(prototype):
    client = webtest.TestApp(prototype["app"])
    response = client.post_json("/cart", {"item": "tea"})
    sid = sessions.parse_cookie_header(cookie_value(response.headers["Set-Cookie"]))["example.sid"][2:]
    stored = prototype["store"].load(sid.rpartition(".")[0], now=sessions.time.time()).text
    assert '"cart":["tea"]' in stored
