"""When the store fails: /healthz never asks it, /readyz does; every store error on every
operation is a JSON 503 (never a 500), and a failed insert at login keeps the old session."""

import pytest

from support.app import login
from support.basics import cookie_value
from support.mongo import STORE_ERRORS, DownCollection, Wrapped


# --- health and readiness ---

def test_healthz_does_no_store_work(client, counted):
    assert client.get("/healthz").json == {"status": "ok"}
    assert counted.calls == []


def test_healthz_stays_200_with_a_down_store(make_client):
    make_client(collection=DownCollection()).get("/healthz", status=200)


def test_readyz_pings_the_store(make_client, mongo):
    pings = []

    class Recording(Wrapped):
        @property
        def database(self):
            return type("Database", (), {"command": lambda _, name: pings.append(name)})()
    assert make_client(Recording(mongo)).get("/readyz").json == {"status": "ready"}
    assert pings == ["ping"]


def test_readyz_with_a_down_store_is_503(make_client):
    assert make_client(collection=DownCollection()).get("/readyz", status=503).json["error"]


# --- a store that is down: a 503 that sets no cookie and clears none ---

def test_login_with_a_down_store_is_503_not_200(make_client):
    response = make_client(collection=DownCollection()).post_json("/", {"name": "A"}, status=503)
    assert "Set-Cookie" not in response.headers


def test_name_with_a_cookie_and_a_down_store_is_503(make_client, client):
    cookie = cookie_value(login(client).headers["Set-Cookie"])
    down = make_client(collection=DownCollection())
    assert down.get("/name", headers={"Cookie": cookie}, status=503).json["error"]


def test_logout_with_a_down_store_is_503_and_keeps_the_cookie(make_client, client):
    cookie = cookie_value(login(client).headers["Set-Cookie"])
    down = make_client(collection=DownCollection())
    response = down.post("/logout", headers={"Cookie": cookie}, status=503)
    assert response.json["error"] and "Set-Cookie" not in response.headers


# --- every store error on every operation ---

class FailingCollection(Wrapped):
    """A working mongomock collection, except that the named operations raise `error`."""

    def __init__(self, collection, prefixes, error):
        super().__init__(collection)
        self.prefixes, self.error = prefixes, error

    @property
    def database(self):
        outer = self

        class Database:
            def command(self, *args, **kwargs):
                if "command" in outer.prefixes:
                    raise outer.error()
                return outer.collection.database.command(*args, **kwargs)
        return Database()

    def call(self, name, *args, **kwargs):
        if name.startswith(self.prefixes):
            raise self.error()
        return super().call(name, *args, **kwargs)


def _read_name(client, cookie, clock):
    return client.get("/name", headers={"Cookie": cookie}, status=503)


def _touch(client, cookie, clock):
    clock.advance(7 * 3600 / 10)  # the touch is due: a write
    return client.get("/name", headers={"Cookie": cookie}, status=503)


def _login(client, cookie, clock):
    return client.post_json("/", {"name": "Bob"}, status=503)


def _login_over_a_session(client, cookie, clock):
    return client.post_json("/", {"name": "Bob"}, headers={"Cookie": cookie}, status=503)


def _logout(client, cookie, clock):
    return client.post("/logout", headers={"Cookie": cookie}, status=503)


def _readyz(client, cookie, clock):
    return client.get("/readyz", status=503)


OPERATIONS = {  # what fails -> a request that needs it
    "read": (("find",), _read_name),
    "touch": (("update", "find_one_and"), _touch),
    "insert": (("insert",), _login),
    "delete at login": (("delete",), _login_over_a_session),
    "delete at logout": (("delete",), _logout),
    "ping": (("command",), _readyz),
}


@pytest.mark.parametrize("error", STORE_ERRORS.values(), ids=STORE_ERRORS.keys())
@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_every_store_error_is_a_json_503_never_a_500(make_client, client, mongo, clock, error, operation):
    prefixes, request = operation
    cookie = cookie_value(login(client).headers["Set-Cookie"])
    failing = make_client(collection=FailingCollection(mongo, prefixes, error))
    response = request(failing, cookie, clock)
    assert response.content_type == "application/json"
    assert response.json["error"].startswith("the session store is unavailable")
    assert "Set-Cookie" not in response.headers


def test_a_failed_insert_at_login_keeps_the_old_session(make_client, client, mongo):
    cookie = cookie_value(login(client, "Alice").headers["Set-Cookie"])
    failing = make_client(collection=FailingCollection(mongo, ("insert",), STORE_ERRORS["AutoReconnect"]))
    failing.post_json("/", {"name": "Bob"}, headers={"Cookie": cookie}, status=503)
    client.cookiejar.clear()
    assert client.get("/name", headers={"Cookie": cookie}).json == {"name": "Alice"}  # still logged in
