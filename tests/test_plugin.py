"""SessionPlugin in your own routes: the README's prototype, run as it is printed."""

import os
import re

import bottle
import pytest
import webtest

import service
import sessions
from support.basics import SECRET, cookie_value

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


def test_the_readme_prototype_is_short_and_its_secret_long_enough(prototype):
    lines = [line for line in readme_prototype().splitlines() if line.strip()]
    assert len(lines) <= 50
    assert all(len(secret) >= 32 for secret in prototype["options"].secrets)


def log_in(client, name):
    response = client.post("/login", {"name": name}, status=303)
    assert response.headers["Location"].endswith("/cart") and "Set-Cookie" in response.headers
    return client.get("/cart").json


def test_the_readme_prototype_logs_in_with_a_redirect_and_keeps_a_cart_per_visitor(prototype):
    ann, bob = webtest.TestApp(prototype["app"]), webtest.TestApp(prototype["app"])
    assert log_in(ann, "Ann") == {"user": "Ann", "cart": []}
    assert ann.post_json("/cart", {"item": "tea"}).json == {"cart": ["tea"]}
    assert ann.post_json("/cart", {"item": "milk"}).json == {"cart": ["tea", "milk"]}
    assert bob.get("/cart").json == {"user": None, "cart": []}  # no cookie, no cart
    assert log_in(bob, "Bob") == {"user": "Bob", "cart": []}
    assert ann.get("/cart").json == {"user": "Ann", "cart": ["tea", "milk"]}


def test_the_readme_prototype_regenerates_at_login_and_deletes_at_logout(prototype):
    client = webtest.TestApp(prototype["app"])
    log_in(client, "Ann")
    first = client.cookies["example.sid"]
    log_in(client, "Ann")
    assert client.cookies["example.sid"] != first and len(prototype["store"]) == 1  # the old id is gone
    response = client.post("/logout", status=303)
    assert "Max-Age=0" in response.headers["Set-Cookie"] and len(prototype["store"]) == 0
    assert client.get("/cart").json == {"user": None, "cart": []}


@pytest.mark.parametrize("request_args, status, error", [
    (("/login", {"name": " "}), 400, "send a name"),
    (("/cart", '{"item": 7}'), 401, "log in first"),
    (("/nowhere", ""), 404, None),
])
def test_the_readme_prototype_answers_errors_as_json_and_stores_nothing(prototype, request_args, status, error):
    client = webtest.TestApp(prototype["app"])
    response = client.post(*request_args, status=status)
    assert response.content_type == "application/json" and "error" in response.json
    assert error is None or response.json["error"] == error
    assert "Set-Cookie" not in response.headers and len(prototype["store"]) == 0


def test_the_readme_prototype_refuses_a_bad_item_after_login(prototype):
    client = webtest.TestApp(prototype["app"])
    log_in(client, "Ann")
    assert client.post_json("/cart", {"item": 7}, status=400).json == {"error": 'send {"item": "..."}'}
    assert client.post_json("/cart", ["tea"], status=400).json == {"error": 'send {"item": "..."}'}
    assert client.get("/cart").json["cart"] == []


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
    client = webtest.TestApp(prototype["app"])
    for response in (client.get("/cart"), client.post("/login", {"name": "Ann"}, status=303),
                     client.post_json("/cart", {"item": "tea"})):
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
    response = client.post("/login", {"name": "Ann"}, status=303)
    sid = sessions.parse_cookie_header(cookie_value(response.headers["Set-Cookie"]))["example.sid"][2:]
    stored = prototype["store"].load(sid.rpartition(".")[0], now=sessions.time.time()).text
    assert '"user":"Ann"' in stored

def own_app(store=None, clock=None, **options):
    """A Bottle app of your own with the plugin, the way the README installs it."""
    store = sessions.MemoryStore() if store is None else store
    interface = sessions.SessionInterface(store, sessions.Options(secrets=(SECRET,), **options),
                                          **({"clock": clock} if clock else {}))
    app = bottle.Bottle()
    app.install(service.SessionPlugin(interface))
    return app, store


def stored_texts(store):
    return [record.text for record in store._records.values()]


def test_a_redirect_after_a_login_saves_it_and_sends_the_cookie_on_the_redirect():
    app, store = own_app()

    @app.post("/login")
    def login(session):
        session.regenerate()
        session["user"] = "ann"
        bottle.redirect("/home")  # raises its HTTPResponse through the plugin

    @app.get("/home")
    def home(session):
        return {"user": session.get("user")}

    client = webtest.TestApp(app)
    response = client.post("/login", status=303, extra_environ={"SERVER_PROTOCOL": "HTTP/1.1"})
    assert response.headers["Location"].endswith("/home")
    assert response.headers["Set-Cookie"].startswith("example.sid=s%3A")
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Vary"] == "Cookie"
    assert len(stored_texts(store)) == 1
    assert client.get("/home").json == {"user": "ann"}  # the browser follows the redirect, logged in


@pytest.mark.parametrize("status", [200, 201, 204, 302])
def test_a_returned_http_response_gets_the_cookie_and_keeps_the_visitor_logged_in(status):
    app, store = own_app()

    @app.post("/login")
    def login(session):
        session.regenerate()  # the old session is deleted at save: the new cookie must arrive
        session["user"] = "ann"
        return bottle.HTTPResponse("", status=status, headers={"X-Own": "kept"})

    @app.get("/me")
    def me(session):
        return {"user": session.get("user")}

    client = webtest.TestApp(app)
    client.post("/login")
    response = client.post("/login", status=status)  # a second login regenerates the first
    assert response.headers["X-Own"] == "kept"
    assert response.headers["Set-Cookie"].startswith("example.sid=s%3A")
    assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/me").json == {"user": "ann"}
    assert len(stored_texts(store)) == 1  # the first login's session is gone, the second's is there


def test_a_raised_success_response_is_saved_too():
    app, store = own_app()

    @app.post("/mark")
    def mark(session):
        session["marked"] = True
        raise bottle.HTTPResponse({"ok": True}, status=202)

    response = webtest.TestApp(app).post("/mark", status=202)
    assert "Set-Cookie" in response.headers and stored_texts(store) != []


@pytest.mark.parametrize("answer", [
    lambda: bottle.abort(400, "no"),  # raised HTTPError
    lambda: bottle.HTTPError(409, "conflict"),  # returned HTTPError
    lambda: bottle.HTTPResponse("gone", status=410),  # returned response with an error status
    lambda: setattr(bottle.response, "status", 422) or "refused",  # the status set, a body returned
], ids=["abort", "returned-error", "returned-410", "status-422"])
def test_an_error_answer_stores_nothing_and_sends_no_cookie(answer):
    app, store = own_app()

    @app.post("/change")
    def change(session):
        session["changed"] = True
        return answer()

    response = webtest.TestApp(app).post("/change", expect_errors=True)
    assert response.status_int >= 400
    assert "Set-Cookie" not in response.headers and stored_texts(store) == []
    assert response.headers["Cache-Control"] == "no-store"  # an error about a session is private too


def test_the_plugins_cookie_goes_beside_the_routes_own():
    app, _ = own_app()

    @app.post("/prefs")
    def prefs(session):
        session["theme"] = "dark"
        bottle.response.set_cookie("theme", "dark", path="/")
        return {"ok": True}

    cookies = webtest.TestApp(app).post("/prefs").headers.getall("Set-Cookie")
    assert sorted(cookie.split("=")[0] for cookie in cookies) == ["example.sid", "theme"]


def test_a_second_plugin_with_the_same_keyword_is_refused():
    app, _ = own_app()
    other = service.SessionPlugin(sessions.SessionInterface(sessions.MemoryStore(),
                                                            sessions.Options(secrets=(SECRET,))))
    with pytest.raises(bottle.PluginError, match="'session'"):
        app.install(other)
    app.install(service.SessionPlugin(other.interface, keyword="admin_session"))  # another keyword: fine


class StoreDown(sessions.MemoryStore):
    def load(self, *args):
        raise sessions.StoreUnavailable("down")


def test_a_store_that_is_down_is_a_503_not_a_500_in_your_own_app():
    app, _ = own_app(StoreDown())

    @app.get("/me")
    def me(session):
        return {"user": session.get("user")}

    signed = "s%3A" + sessions.sign("some-id", SECRET)
    response = webtest.TestApp(app).get("/me", headers={"Cookie": f"example.sid={signed}"}, status=503)
    assert response.headers["Cache-Control"] == "no-store"


def test_a_mongo_store_used_directly_turns_driver_errors_into_a_503():
    from support.mongo import DownCollection
    app, _ = own_app(sessions.MongoStore(DownCollection(), ensure_indexes=False))

    @app.post("/login")
    def login(session):
        session["user"] = "ann"
        return {"ok": True}

    assert webtest.TestApp(app).post("/login", status=503).status_int == 503


def test_an_exception_in_the_route_stores_nothing():
    app, store = own_app()
    app.catchall = True

    @app.post("/broken")
    def broken(session):
        session["half"] = "done"
        raise RuntimeError("a bug in the route")

    webtest.TestApp(app).post("/broken", status=500, expect_errors=True)
    assert stored_texts(store) == []


def test_a_route_outside_the_cookie_path_gets_a_session_that_is_never_stored():
    app, store = own_app(cookie_path="/app")

    @app.post("/elsewhere")
    def elsewhere(session):
        session["x"] = 1  # the browser would never send a Path=/app cookie here
        return {"ok": True}

    @app.post("/app/inside")
    def inside(session):
        session["x"] = 1
        return {"ok": True}

    client = webtest.TestApp(app)
    assert "Set-Cookie" not in client.post("/elsewhere").headers and stored_texts(store) == []
    assert "Path=/app;" in client.post("/app/inside").headers["Set-Cookie"]


def test_a_mounted_app_matches_the_cookie_path_against_the_whole_path():
    inner, store = own_app(cookie_path="/shop")

    @inner.post("/cart")
    def cart(session):
        session["cart"] = ["tea"]
        return {"ok": True}

    outer = bottle.Bottle()
    outer.mount("/shop/", inner)
    response = webtest.TestApp(outer).post("/shop/cart")
    assert "Path=/shop;" in response.headers["Set-Cookie"] and len(stored_texts(store)) == 1


def test_a_generator_route_cannot_take_a_session():
    # Its body runs after the plugin has saved: every change would be lost.  Said at once.
    app, _ = own_app()

    def streamed(session):
        session["x"] = 1
        yield b"late"
    with pytest.raises(bottle.PluginError, match="generator"):
        app.route("/stream", callback=streamed)
        app.routes[-1].call  # bottle applies plugins when a route is first called: make it so


def test_the_readme_prototype_keeps_a_name_that_is_not_ascii(prototype):
    client = webtest.TestApp(prototype["app"])
    assert log_in_as(client, "Zoë") == {"user": "Zoë", "cart": []}


def log_in_as(client, name):
    client.post("/login", {"name": name}, status=303)
    return client.get("/cart").json
