"""Drop-in interoperability with the Node.js peer: express 5 + express-session
1.19 + connect-mongo 6 (tests/interop/app.js), sharing one cookie and one
MongoDB collection with `python service.py`.

How it works: one wire server (mongomock behind MongoDB's wire protocol) holds
the database `interop`; the Node app and the Python services both use its
collection `sessions`, with the same SESSION_SECRET, SESSION_COOKIE_NAME and
SESSION_MAX_AGE.  A user is a cookie jar; carrying the jar's cookie from a
client of one service to a client of the other is what a browser does when a
load balancer sends its requests to either side during a migration.

    cookie    <COOKIE>=s%3A<id>.<base64 HMAC-SHA256(secret, id), no '='>
    document  {_id: <id>, expires: <date>, session: '{"cookie": {...}, ...data}'}

pymongo looks at the documents directly.  Every process here is a
tests/child.py Child, stopped by its PID.
"""

import hashlib
import json
import re
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

import pymongo
import pytest

import sessions
from support.basics import skip_unless
from support.nodeapp import install_node_app, node_available, start_node_app
from support.realhttp import start_service, user_of

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SECRET_A = "interop-secret-a"  # both services sign with it
SECRET_B = "interop-secret-b"  # the next secret, for the rotation test
COOKIE = "interop.sid"
MAX_AGE = 3600  # seconds, the idle timeout on both sides
DATABASE, COLLECTION = "interop", "sessions"  # connect-mongo's default collection name
USER_KEYS = {"cart": [{"sku": "A-1", "qty": 2}], "theme": "dark", "flags": {"beta": True, "seen": [1, 2, 3]}}


# --- Fixtures: one install, one database, one Node app, Python services ---


@pytest.fixture(scope="session")
def node_app_dir(tmp_path_factory):
    skip_unless(node_available())
    return install_node_app(str(tmp_path_factory.mktemp("node-peer")))


@pytest.fixture(scope="module")
def wire(wire_server):
    return wire_server  # conftest's shared server (no TTL sweep); this module's database is DATABASE


def shared_env(wire, secret=SECRET_A):
    return {"MONGO_URL": wire.url + DATABASE, "SESSION_SECRET": secret,
            "SESSION_COOKIE_NAME": COOKIE, "SESSION_MAX_AGE": str(MAX_AGE)}


@pytest.fixture(scope="module")
def node(node_app_dir, wire):
    app = start_node_app(node_app_dir, 0, shared_env(wire))  # express-session's defaults otherwise
    yield app
    app.stop()


def python_service(env):
    process = start_service(env)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def python(wire):
    """Default lazy touch (a tenth of MAX_AGE): a read writes nothing."""
    yield from python_service(shared_env(wire))


@pytest.fixture(scope="module")
def python_touching(wire):
    """SESSION_TOUCH_AFTER=0: every read writes the new expiry (a touch)."""
    yield from python_service({**shared_env(wire), "SESSION_TOUCH_AFTER": "0"})


@pytest.fixture(scope="module")
def python_rotated(wire):
    """Rotating to SECRET_B: the new secret signs, the old one still verifies."""
    yield from python_service(shared_env(wire, secret=f"{SECRET_B},{SECRET_A}"))


@pytest.fixture(scope="module")
def collection(wire):
    client = pymongo.MongoClient(wire.url, serverSelectionTimeoutMS=5000)
    yield client[DATABASE][COLLECTION]
    client.close()


@pytest.fixture
def library(collection):
    """sessions.py itself on the shared collection, to rewrite a session the
    way a Python route that changes data would (the service's only writing
    route, login, starts a new session instead)."""
    options = sessions.Options(secrets=(SECRET_A,), cookie_name=COOKIE, max_age=MAX_AGE)
    return sessions.SessionInterface(sessions.MongoStore(collection), options)


# --- Helpers ---


def carry(source, target):
    """Give target the session cookie source holds: same name, same raw value."""
    target.jar[COOKIE] = source.jar[COOKIE]
    return target


def cookie_header(user):
    return f"{COOKIE}={user.jar[COOKIE]}"


def session_id(user, secrets=(SECRET_A,)):
    """The id in the user's cookie if one of secrets signed it, else None."""
    raw = urllib.parse.unquote(user.jar[COOKIE])
    assert raw.startswith("s:"), raw
    return sessions.unsign(raw[2:], secrets)


def log_in(service, name):
    user = user_of(service)
    response = user.post("/", {"name": name})
    assert (response.status, response.json()) == (200, {"name": name}), response.body
    assert COOKIE in user.jar, response.headers
    return user


def iso_to_datetime(text):
    """A JavaScript toISOString() -> naive UTC datetime, as pymongo returns dates."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).replace(tzinfo=None)


def stored_data(doc):
    """Check a document has connect-mongo's shape; return its parsed session."""
    assert doc is not None, "no session document"
    assert isinstance(doc["_id"], str) and len(doc["_id"]) == 32, doc["_id"]
    assert isinstance(doc["expires"], datetime), doc["expires"]
    assert isinstance(doc["session"], str), doc["session"]
    data = json.loads(doc["session"])
    cookie = data["cookie"]
    # Milliseconds, express's unit.  express-session computes a new session's
    # originalMaxAge as expires - Date.now(), a millisecond short when the clock ticks.
    assert MAX_AGE * 1000 - 5 <= cookie["originalMaxAge"] <= MAX_AGE * 1000
    iso_to_datetime(cookie["expires"])
    assert cookie["httpOnly"] is True and cookie["path"] == "/"
    return data


PYTHON_FIELDS = {"createdAt", "lastModified", "owner", "client"}  # Python's own; connect-mongo keeps them


def freshly_written(doc):
    """A document just inserted or rewritten: connect-mongo's three fields (and
    only fields of Python's own beside them), and `expires` is the cookie's expiry (what connect-mongo stores) or
    a moment later: after a route's explicit save() express-session also
    touches the session, which moves `expires` and leaves the string alone."""
    data = stored_data(doc)
    assert set(doc) - PYTHON_FIELDS == {"_id", "expires", "session"}, set(doc)
    lag = doc["expires"] - iso_to_datetime(data["cookie"]["expires"])
    assert timedelta(0) <= lag < timedelta(seconds=5), (doc["expires"], data["cookie"]["expires"])
    return data


def later():
    """Let the clock pass a millisecond (BSON dates keep milliseconds), so a
    write's new `expires` is strictly later than the one before."""
    time.sleep(0.02)


# --- Document shape ---


def test_both_sides_store_connect_mongos_document_shape(node, python, collection):
    from_node = freshly_written(collection.find_one({"_id": session_id(log_in(node, "Ada"))}))
    python_doc = collection.find_one({"_id": session_id(log_in(python, "Bea"))})
    from_python = freshly_written(python_doc)
    assert python_doc["expires"] == iso_to_datetime(from_python["cookie"]["expires"])  # one write, one instant
    assert set(from_python["cookie"]) == set(from_node["cookie"])  # the same cookie object, key for key
    assert from_node["user"] == {"name": "Ada", "isLoggedIn": True}
    assert from_python["user"] == {"name": "Bea", "isLoggedIn": True}
    assert set(from_python) - set(from_node) == {"absoluteExpires"}  # Python's absolute deadline: plain data to Node
    iso_to_datetime(from_python["absoluteExpires"])


# --- 1. A login on one side is a login on the other ---


def test_a_login_through_node_is_served_by_python(node, python):
    ada = log_in(node, "Zoë")
    answer = carry(ada, user_of(python)).get("/name")
    assert (answer.status, answer.json()) == (200, {"name": "Zoë"})


def test_a_login_through_python_is_served_by_node(node, python):
    bea = log_in(python, "Bea 🚀")
    answer = carry(bea, user_of(node)).get("/name")
    assert (answer.status, answer.json()) == (200, {"name": "Bea 🚀"})


def test_a_python_login_replaces_an_empty_session_node_started(node, python, collection):
    # express-session's default saveUninitialized: Node stores and cookies a
    # session for a visitor who has not logged in.
    visitor = user_of(node)
    assert visitor.get("/name").status == 404
    started = session_id(visitor)
    assert set(stored_data(collection.find_one({"_id": started}))) == {"cookie"}
    # Python serves it as nobody's session; its login issues a new id and
    # deletes Node's (OWASP: renew the session id at login).
    user = carry(visitor, user_of(python))
    assert user.get("/name").status == 404
    assert user.post("/", {"name": "Dee"}).status == 200
    assert session_id(user) != started
    assert collection.find_one({"_id": started}) is None
    assert carry(user, visitor).get("/name").json() == {"name": "Dee"}


# --- 2. A logout on one side is a logout on the other ---


@pytest.mark.parametrize("login_side, logout_side", [("node", "python"), ("python", "node")])
def test_a_logout_through_one_side_ends_the_session_on_the_other(request, collection, login_side, logout_side):
    login_service, logout_service = request.getfixturevalue(login_side), request.getfixturevalue(logout_side)
    # 1. Log in on one side; the other side serves the session.
    user = log_in(login_service, "Cy")
    sid, sent = session_id(user), {"Cookie": cookie_header(user)}
    other = carry(user, user_of(logout_service))
    assert other.get("/name").status == 200
    # 2. Log out on the other side: the document is gone.
    assert other.post("/logout").status == 200
    assert collection.find_one({"_id": sid}) is None
    # 3. The old cookie, replayed to either side, is nobody's session.
    for service in (login_service, logout_service):
        answer = user_of(service).get("/name", headers=sent)
        assert answer.status == 404, (service, answer.body)
        assert answer.json() == {"error": "not logged in"}
    assert collection.find_one({"_id": sid}) is None  # and no side brought it back


# --- 3. A session one side touched or rewrote still loads on the other ---


def test_a_node_session_python_touched_and_rewrote_still_loads_in_node(node, python_touching, library, collection):
    # 1. Node logs in and stores user keys of its own.
    ada = log_in(node, "Ada")
    sid = session_id(ada)
    assert ada.post("/extra", USER_KEYS).status == 200
    written = collection.find_one({"_id": sid})
    assert {k: v for k, v in freshly_written(written).items() if k in USER_KEYS} == USER_KEYS

    # 2. Python reads it, and with SESSION_TOUCH_AFTER=0 the read is a touch:
    #    a later `expires`, the session string left exactly as Node wrote it.
    later()
    py_ada = carry(ada, user_of(python_touching))
    answer = py_ada.get("/name")
    assert (answer.status, answer.json()) == (200, {"name": "Ada"})
    assert answer.set_cookies(), "a touch sends the cookie with its new expiry"
    assert session_id(py_ada) == sid
    touched = collection.find_one({"_id": sid})
    assert touched["expires"] > written["expires"]
    assert touched["session"] == written["session"]
    assert set(touched) == {"_id", "expires", "session", "lastModified"}  # connect-mongo's name for the touch

    # 3. Node still loads the touched session, its keys intact.
    shown = carry(py_ada, ada).get("/session")
    assert shown.status == 200, shown.body
    assert {k: v for k, v in shown.json().items() if k in USER_KEYS} == USER_KEYS

    # 4. Python rewrites it: one key changed, the rest kept.
    session = library.open_session(cookie_header(ada))
    assert not session.is_new and session.id == sid
    assert session["theme"] == "dark" and session["user"] == {"name": "Ada", "isLoggedIn": True}
    session["theme"] = "light"
    library.save_session(session)
    rewritten = freshly_written(collection.find_one({"_id": sid}))
    assert rewritten["theme"] == "light" and rewritten["cart"] == USER_KEYS["cart"]

    # 5. Node rebuilds its cookie from Python's ISO `expires` and
    #    `originalMaxAge`, and serves the session with every key.
    shown = ada.get("/session")
    assert shown.status == 200, shown.body
    body = shown.json()
    assert body["user"] == {"name": "Ada", "isLoggedIn": True}
    assert {k: body[k] for k in USER_KEYS} == {**USER_KEYS, "theme": "light"}
    assert body["cookie"]["originalMaxAge"] == MAX_AGE * 1000
    assert body["cookie"]["httpOnly"] is True and body["cookie"]["path"] == "/"
    assert iso_to_datetime(body["cookie"]["expires"]) > datetime.now(timezone.utc).replace(tzinfo=None)
    assert ada.get("/name").json() == {"name": "Ada"}

    # 6. And Node can write it again on top of Python's rewrite.
    assert ada.post("/extra", {"theme": "solarized"}).status == 200
    again = freshly_written(collection.find_one({"_id": sid}))
    assert again["theme"] == "solarized" and again["flags"] == USER_KEYS["flags"]


def test_a_python_session_node_touched_and_rewrote_still_loads_in_python(node, python, library, collection):
    # 1. Python logs in; a Python route stores a key of its own.
    bea = log_in(python, "Bea")
    sid = session_id(bea)
    session = library.open_session(cookie_header(bea))
    absolute = session.absolute_expires
    assert absolute is not None
    session["prefs"] = {"lang": "de", "tz": "Europe/Berlin"}
    library.save_session(session)
    written = collection.find_one({"_id": sid})
    freshly_written(written)

    # 2. Node reads it: express-session touches it through connect-mongo
    #    (a later `expires`, the session string untouched).
    later()
    node_bea = carry(bea, user_of(node))
    assert node_bea.get("/name").json() == {"name": "Bea"}
    touched = collection.find_one({"_id": sid})
    assert touched["expires"] > written["expires"]
    assert touched["session"] == written["session"]

    # 3. Node rewrites it, adding keys; Python's keys ride along as data.
    answer = node_bea.post("/extra", USER_KEYS)
    assert answer.status == 200, answer.body
    assert answer.json()["prefs"] == {"lang": "de", "tz": "Europe/Berlin"}
    assert "absoluteExpires" in answer.json()
    assert set(freshly_written(collection.find_one({"_id": sid}))) >= {"prefs", "absoluteExpires", *USER_KEYS}

    # 4. Python serves it, with its own keys, Node's keys and its login deadline.
    carry(node_bea, bea)
    assert bea.get("/name").json() == {"name": "Bea"}
    session = library.open_session(cookie_header(bea))
    assert not session.is_new and session.id == sid
    assert session["prefs"] == {"lang": "de", "tz": "Europe/Berlin"}
    assert {k: session[k] for k in USER_KEYS} == USER_KEYS
    assert session.absolute_expires == absolute  # Node kept absoluteExpires, so the absolute timeout holds

    # 5. Python rewrites Node's version (compare-and-set on Node's string) and Node still serves it.
    session["prefs"]["lang"] = "fr"
    library.save_session(session)
    shown = node_bea.get("/session").json()
    assert shown["prefs"]["lang"] == "fr" and shown["cart"] == USER_KEYS["cart"]
    assert shown["user"] == {"name": "Bea", "isLoggedIn": True}


# --- 4. Secret rotation ---


def test_python_rotating_secrets_accepts_node_cookies_and_signs_with_the_new_secret(node, python_rotated, collection):
    # 1. Node signs with A; Python configured "B,A" verifies with A too.
    ada = log_in(node, "Ada")
    answer = carry(ada, user_of(python_rotated)).get("/name")
    assert (answer.status, answer.json()) == (200, {"name": "Ada"})
    # 2. A login through Python is signed with B, the first secret, and only B.
    bea = log_in(python_rotated, "Bea")
    sid = session_id(bea, secrets=(SECRET_B,))
    assert sid is not None, bea.jar[COOKIE]
    assert session_id(bea, secrets=(SECRET_A,)) is None
    assert freshly_written(collection.find_one({"_id": sid}))["user"]["name"] == "Bea"
    # 3. So Node must learn B before Python signs with it: with A alone it refuses the cookie.
    assert carry(bea, user_of(node)).get("/name").status == 404


# --- 5. Python never breaks a document Node wrote ---

UNKNOWN_FIELDS = {"updatedAt": datetime(2030, 1, 1, 12, 0, 0),  # connect-mongo's timestamps option
                  "audit": {"by": "a tool", "n": 3}}  # anything else another tool adds


def test_python_keeps_document_fields_it_does_not_know(node, python_touching, library, collection):
    # 1. Node writes a session; another tool adds fields to the document.
    ada = log_in(node, "Ada")
    sid = session_id(ada)
    collection.update_one({"_id": sid}, {"$set": UNKNOWN_FIELDS})
    before = collection.find_one({"_id": sid})
    # 2. Python touches it: only `expires` changes.
    later()
    answer = carry(ada, user_of(python_touching)).get("/name")
    assert (answer.status, answer.json()) == (200, {"name": "Ada"})
    touched = collection.find_one({"_id": sid})
    assert touched["expires"] > before["expires"]
    moved = {"expires", "lastModified"}  # the touch, under connect-mongo's own names
    assert {k: v for k, v in touched.items() if k not in moved} == {k: v for k, v in before.items() if k not in moved}
    # 3. Python rewrites it: the unknown fields are still there, unchanged.
    session = library.open_session(cookie_header(ada))
    session["theme"] = "light"
    library.save_session(session)
    rewritten = collection.find_one({"_id": sid})
    assert {k: rewritten.get(k) for k in UNKNOWN_FIELDS} == UNKNOWN_FIELDS
    assert stored_data(rewritten)["theme"] == "light"
    # 4. Node still serves it.
    assert ada.get("/name").json() == {"name": "Ada"}


@pytest.mark.parametrize("unreadable", [
    "{not json",
    "",
    '{"cookie": {"originalMaxAge": 3600000}, "user": {"name": "Ada", "isLoggedIn": true}',  # cut short
    "null",
    '["user"]',
    '"a string"',
    {"user": {"name": "Ada", "isLoggedIn": True}},  # connect-mongo's stringify: false stores an object
], ids=["garbage", "empty", "truncated", "null", "array", "string", "bson-object"])
def test_an_unreadable_session_document_is_no_session_and_is_left_alone(
        node, python, python_touching, collection, unreadable):
    ada = log_in(node, "Ada")
    sid = session_id(ada)
    collection.update_one({"_id": sid}, {"$set": {"session": unreadable}})
    before = collection.find_one({"_id": sid})
    later()
    for service in (python, python_touching):  # the touching one would write if it loaded anything
        answer = carry(ada, user_of(service)).get("/name")
        assert (answer.status, answer.json()) == (404, {"error": "not logged in"}), answer.body
        assert answer.set_cookies() == []
    assert collection.find_one({"_id": sid}) == before


def test_a_foreign_absolute_expires_is_no_deadline_not_no_session(node, python, collection):
    # A Node app keeps its own "absoluteExpires" as a number of milliseconds.
    # Python cannot read it as its deadline, so it knows none yet - but the
    # session is still the user's session.
    ada = log_in(node, "Ada")
    sent = {"Cookie": cookie_header(ada)}
    assert ada.post("/extra", {"absoluteExpires": int(time.time() * 1000) + 86_400_000}).status == 200
    assert user_of(python).get("/name", headers=sent).json() == {"name": "Ada"}


@pytest.mark.parametrize("stored", ['{"user": {"name": "Ada", "isLoggedIn": true}, "absoluteExpires": 1}',
                                    "{not json"], ids=["foreign-absoluteExpires", "garbage"])
def test_a_logout_through_python_deletes_the_document_the_cookie_names(node, python, collection, stored):
    # Readable or not, the cookie verified: the document it names must go
    # (OWASP: logout invalidates the session on the server).
    ada = log_in(node, "Ada")
    sid, sent = session_id(ada), {"Cookie": cookie_header(ada)}
    collection.update_one({"_id": sid}, {"$set": {"session": stored}})
    assert user_of(python).post("/logout", headers=sent).status == 200
    assert collection.find_one({"_id": sid}) is None
    assert user_of(node).get("/name", headers=sent).status == 404



# --- 6. Per-session lifetimes and cookie attributes mean the same on both sides ---

DAYS_30 = 30 * 24 * 3600


@pytest.fixture(scope="module")
def python_browser_session(wire):
    """SESSION_BROWSER_COOKIE=1: cookies without Expires, the store's idle timeout still kept."""
    yield from python_service({**shared_env(wire), "SESSION_BROWSER_COOKIE": "1"})


@pytest.fixture(scope="module")
def python_strict(wire):
    yield from python_service({**shared_env(wire), "SESSION_SAMESITE": "strict"})


def set_cookie_of(response):
    [header] = [v for v in response.set_cookies() if v.startswith(COOKIE + "=")]
    return header


def test_a_python_remember_me_session_keeps_its_lifetime_in_node(node, python, library, collection):
    # 1. A Python route gives the session 30 days ("remember me").
    bea = log_in(python, "Bea")
    session = library.open_session(cookie_header(bea))
    session.max_age = DAYS_30
    library.save_session(session)
    data = stored_data_any(collection.find_one({"_id": session.id}))
    assert data["cookie"]["originalMaxAge"] == DAYS_30 * 1000
    # 2. Node reads originalMaxAge: when it rewrites the session, its cookie and the document say 30 days.
    node_bea = carry(bea, user_of(node))
    answer = node_bea.post("/extra", {"theme": "dark"})
    assert answer.status == 200, answer.body
    assert f"Max-Age={DAYS_30}" in set_cookie_of(answer) or "Expires=" in set_cookie_of(answer)
    shown = node_bea.get("/session").json()
    assert shown["cookie"]["originalMaxAge"] == DAYS_30 * 1000
    expires = collection.find_one({"_id": session.id})["expires"]
    assert expires > datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=29)


def test_a_node_remember_me_session_keeps_its_lifetime_in_python(node, python_touching):
    # Node's route sets req.session.cookie.maxAge to 30 days; Python's touch re-sends a 30-day cookie.
    ada = log_in(node, "Ada")
    assert ada.post("/remember", {"maxAge": DAYS_30 * 1000}).status == 200
    answer = carry(ada, user_of(python_touching)).get("/name")
    assert (answer.status, answer.json()) == (200, {"name": "Ada"})
    assert abs(int(re.search(r"Max-Age=(\d+)", set_cookie_of(answer)).group(1)) - DAYS_30) < 5


def test_a_python_browser_session_is_one_in_node_too(node, python_browser_session, collection):
    bea = log_in(python_browser_session, "Bea")
    doc = collection.find_one({"_id": session_id(bea)})
    data = json.loads(doc["session"])
    assert data["cookie"]["originalMaxAge"] is None and data["cookie"]["expires"] is None  # express's shape
    node_bea = carry(bea, user_of(node))
    answer = node_bea.post("/extra", {"theme": "dark"})
    assert answer.status == 200  # Node sends no expiring cookie either (for a browser session, none at all)
    assert all("Expires=" not in header for header in answer.set_cookies())
    assert node_bea.get("/session").json()["cookie"]["originalMaxAge"] is None
    assert carry(node_bea, bea).get("/name").json() == {"name": "Bea"}  # and Python still serves it


def test_a_node_browser_session_is_one_in_python_too(node, python_touching):
    ada = log_in(node, "Ada")
    assert ada.post("/remember", {"maxAge": None}).status == 200
    answer = carry(ada, user_of(python_touching)).get("/name")
    assert answer.status == 200
    assert "Expires=" not in "".join(answer.set_cookies())  # a touch re-sends no expiring cookie


def test_samesite_strict_from_python_is_kept_by_node(node, python_strict, collection):
    bea = log_in(python_strict, "Bea")
    assert json.loads(collection.find_one({"_id": session_id(bea)})["session"])["cookie"]["sameSite"] == "strict"
    answer = carry(bea, user_of(node)).post("/extra", {"theme": "dark"})
    assert answer.status == 200 and "SameSite=Strict" in set_cookie_of(answer)


def stored_data_any(doc):
    """The parsed session of a document, whatever its lifetime."""
    assert doc is not None, "no session document"
    return json.loads(doc["session"])



# --- 7. Owners and ids hashed at rest ---

def test_node_keeps_the_owner_python_gave_a_session(node, python, library, collection):
    bea = log_in(python, "Bea")  # the seed's login binds the session to its name
    sid = session_id(bea)
    assert collection.find_one({"_id": sid})["owner"] == "Bea"
    node_bea = carry(bea, user_of(node))
    later()
    assert node_bea.get("/name").json() == {"name": "Bea"}  # Node touches it...
    assert node_bea.post("/extra", USER_KEYS).status == 200  # ...and rewrites it
    assert collection.find_one({"_id": sid})["owner"] == "Bea"  # connect-mongo's $set leaves it alone
    assert library.handle_of_key(sid) in [info.handle for info in library.list_sessions("Bea")]
    assert user_of(python).get("/sessions", headers={"Cookie": cookie_header(bea)}).status == 200


HASHED = "interop_hashed"


def hashed_env(wire):
    return {**shared_env(wire), "MONGO_URL": wire.url + HASHED}


@pytest.fixture(scope="module")
def node_hashed(node_app_dir, wire):
    app = start_node_app(node_app_dir, 0, {**hashed_env(wire), "TRANSFORM_ID_SHA256": "true"})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def python_hashed(wire):
    yield from python_service({**hashed_env(wire), "SESSION_ID_AT_REST": "sha256"})


@pytest.fixture(scope="module")
def hashed_collection(wire):
    client = pymongo.MongoClient(wire.url, serverSelectionTimeoutMS=5000)
    yield client[HASHED][COLLECTION]
    client.close()


@pytest.mark.parametrize("login_side, read_side", [("node_hashed", "python_hashed"),
                                                   ("python_hashed", "node_hashed")])
def test_ids_hashed_at_rest_agree_with_connect_mongos_transform_id(request, hashed_collection, login_side,
                                                                   read_side):
    login_service, read_service = request.getfixturevalue(login_side), request.getfixturevalue(read_side)
    user = log_in(login_service, "Ida")
    sid = session_id(user)
    digest = hashlib.sha256(sid.encode()).hexdigest()
    assert hashed_collection.find_one({"_id": sid}) is None  # no usable id at rest...
    assert hashed_collection.find_one({"_id": digest}) is not None  # ...only its digest
    sent = {"Cookie": cookie_header(user)}
    reader = carry(user, user_of(read_service))
    assert reader.get("/name").json() == {"name": "Ida"}
    assert reader.post("/logout").status == 200
    assert hashed_collection.find_one({"_id": digest}) is None  # logged out on both sides
    assert user_of(login_service).get("/name", headers=sent).status == 404
