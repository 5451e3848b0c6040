"""The seed service: log in with a name, read it back, log out.

    python service.py          # http://127.0.0.1:4000, embedded in-memory store

Configuration comes from the environment (see README.md).  With MONGO_URL the
sessions live in MongoDB; without it, in an in-memory mongomock database that
is lost on restart.  Sessions themselves (cookie, signing, lifetimes, store)
are sessions.py; this file is wiring: settings, the store, routes, serving.
"""

import functools
import html
import json
import logging
import os
import re
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass

import bottle
import pymongo
from pymongo.errors import PyMongoError
from pymongo.uri_parser import parse_uri

import sessions

log = logging.getLogger("service")

MAX_BODY = 16 * 1024  # bytes of request body on POST /
MAX_NAME = 100  # characters, after trimming
PURGE_EVERY = 60  # seconds between sweeps of expired sessions in the embedded store
DRAIN_FOR = 10  # seconds in-flight requests may take to finish after SIGTERM

# --- Configuration ---


class ConfigError(ValueError):
    """Raised if an environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    mongo_url: str | None
    collection: str
    trust_proxy: bool
    random_secret: bool  # no SESSION_SECRET was given
    options: sessions.Options


# Which variable sets which sessions.Options field, to name it in errors.
ENV_OF_OPTION = {"secrets": "SESSION_SECRET", "cookie_name": "SESSION_COOKIE_NAME", "max_age": "SESSION_MAX_AGE",
                 "absolute_timeout": "SESSION_ABSOLUTE_TIMEOUT", "touch_after": "SESSION_TOUCH_AFTER"}


def settings_from_env(env):
    """Read and check every variable once; a bad value names its variable."""
    def get(name, default=None):
        value = env.get(name, "").strip()
        return value if value else default

    def seconds(name, default):  # the range is checked by sessions.Options
        raw = get(name)
        try:
            return default if raw is None else float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None

    def choice(name, default, choices):
        raw = get(name, default).lower()
        if raw not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return choices[raw]

    port = get("PORT", "4000")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"PORT must be a port number from 0 to 65535, got {port!r}")
    secret = get("SESSION_SECRET")
    keys = [s.strip() for s in secret.split(",")] if secret else [secrets.token_urlsafe(32)]
    try:
        options = sessions.Options(
            secrets=tuple(keys),
            cookie_name=get("SESSION_COOKIE_NAME", "example.sid"),
            max_age=seconds("SESSION_MAX_AGE", 7 * 3600),
            absolute_timeout=seconds("SESSION_ABSOLUTE_TIMEOUT", 24 * 3600),
            touch_after=seconds("SESSION_TOUCH_AFTER", None),
            cookie_secure=choice("COOKIE_SECURE", "auto", {"auto": "auto", "true": True, "false": False}))
    except sessions.OptionError as exc:
        raise ConfigError(f"{ENV_OF_OPTION.get(exc.option, exc.option)}: {exc}") from None
    collection = get("SESSION_COLLECTION", "sessions")
    if "$" in collection or "\0" in collection or "" in collection.split(".") or collection.startswith("system."):
        raise ConfigError(f"SESSION_COLLECTION must be a MongoDB collection name (no '$', not system.*), "
                          f"got {collection!r}")
    return Settings(host=get("HOST", "127.0.0.1"), port=int(port), mongo_url=get("MONGO_URL"), collection=collection,
                    trust_proxy=choice("TRUST_PROXY", "0", {"0": False, "1": True}),
                    random_secret=secret is None, options=options)


# --- The store ---

# Used where MONGO_URL does not say otherwise.  w=majority: an acknowledged
# login survives a replica-set failover.  timeoutMS: one bound (milliseconds)
# on every store operation, server selection and retries included, so an
# outage becomes a 503 within seconds instead of a hung request.
MONGO_DEFAULTS = {"w": "majority", "timeoutMS": 5000}


def open_mongo_collection(url, name):
    try:
        given = {key.lower() for key in parse_uri(url)["options"]}  # URL option names are case-insensitive
        client = pymongo.MongoClient(url, **{k: v for k, v in MONGO_DEFAULTS.items() if k.lower() not in given})
    except (PyMongoError, ValueError) as exc:
        raise ConfigError(f"MONGO_URL is not a usable MongoDB URL: {exc}") from None
    return client.get_default_database(default="sessions")[name]


class EmbeddedCollection:
    """The embedded store: a mongomock collection, made safe and fast for sessions.

    mongomock is not thread-safe and waitress serves on several threads, so one
    call runs at a time.  mongomock also answers every query by scanning every
    document (a read would cost milliseconds with thousands of sessions);
    session queries always name one _id, so that document is looked up
    directly, as MongoDB's _id index does, and mongomock's own matcher checks
    the rest of the filter.  (mongomock internals: pinned in requirements.txt.)"""

    def __init__(self, collection):
        from mongomock.filtering import filter_applies
        self._collection, self._lock = collection, threading.Lock()
        scan = collection._iter_documents

        def by_id(query):
            sid = query.get("_id") if isinstance(query, dict) else None
            if not isinstance(sid, str):
                return scan(query)
            document = collection._store._documents.get(sid)
            return iter([document] if document is not None and filter_applies(query, document) else [])
        collection._iter_documents = by_id

    def find_one(self, query):
        """The hot path (a read per request): skip mongomock's cursor, same result."""
        with self._lock:
            found = next(self._collection._iter_documents(query), None)
            return dict(found) if found is not None else None  # a copy: callers only read it

    def __getattr__(self, name):
        attribute = getattr(self._collection, name)
        if not callable(attribute):
            return attribute

        def locked(*args, **kwargs):
            with self._lock:
                return attribute(*args, **kwargs)
        return locked


def open_embedded_collection(name):
    import mongomock  # only the embedded store needs it
    return EmbeddedCollection(mongomock.MongoClient().sessions[name])


def purge_periodically(store, stop, every=PURGE_EVERY, clock=time.time):
    """The embedded store has no TTL monitor: delete expired sessions every so often."""
    while not stop.wait(every):
        try:
            store.purge(clock())
        except Exception:  # a failed sweep must not end the sweeping
            log.exception("purging expired sessions failed")


# --- HTTP ---


def is_https(environ, trust_proxy):
    # X-Forwarded-Proto is set by whoever sends the request: believe it only behind our own proxy.
    forwarded = environ.get("HTTP_X_FORWARDED_PROTO", "") if trust_proxy else ""
    return environ.get("wsgi.url_scheme") == "https" or forwarded.split(",")[0].strip().lower() == "https"


def read_name(environ):
    """The login name from a JSON or form body, trimmed; abort with 400/413/415 otherwise."""
    # Refuse by the declared length before reading, and count what is read too:
    # a chunked body declares none.
    length = environ.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > MAX_BODY:
        bottle.abort(413, f"the body must be at most {MAX_BODY} bytes")
    kind = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if kind not in ("application/json", "application/x-www-form-urlencoded"):
        bottle.abort(415, "send application/json or application/x-www-form-urlencoded")
    body = environ["wsgi.input"].read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        bottle.abort(413, f"the body must be at most {MAX_BODY} bytes")
    try:
        text = body.decode("utf-8")
        if kind == "application/json":
            fields = json.loads(text)
        else:
            fields = {k: v[0] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}
        name = fields.get("name") if isinstance(fields, dict) else None
        if isinstance(name, str):
            name.encode("utf-8")  # a lone surrogate (JSON allows "\\ud800") could not be sent back
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, JSON nested too deep
        bottle.abort(400, "the body is not valid " + ("JSON" if kind == "application/json" else "form data"))
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
        bottle.abort(400, f"name must be a string of 1 to {MAX_NAME} characters")
    return name.strip()


# --- The teaching page ---

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sessions, seen from the server</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222 }}
.panel {{ background: #f5f5f2; border: 1px solid #ddd; border-radius: 6px; padding: 0 1rem 1rem; margin-top: 2rem }}
code, pre {{ font: 14px ui-monospace, monospace }} pre {{ white-space: pre-wrap; word-break: break-all }}
.error {{ color: #a00 }} dt {{ font-weight: 600 }} dd {{ margin: 0 0 .6rem }}
</style></head><body><h1>Sessions, seen from the server</h1>
{body}
<section class="panel"><h2>What the server sees</h2>
{panel}
<p>JavaScript on this page cannot read the session cookie: it is <code>HttpOnly</code>.
Ids and signatures show only their first 6 characters, because a script could read a
full id from the page and replay it, which would undo HttpOnly.</p></section>
</body></html>"""


_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?")  # RFC 9110 section 12.4.2


def prefers_html(accept):
    """True if the Accept header ranks text/html above application/json (a browser's form post)."""
    def quality(kind):
        best = 0.0
        for item in accept.lower().split(","):
            media, _, params = item.strip().partition(";")
            q = params.strip()[2:] if params.strip().startswith("q=") else "1"
            if media.strip() in (kind, kind.split("/")[0] + "/*", "*/*"):
                best = max(best, float(q) if _QVALUE.fullmatch(q) else 0.0)
        return best
    return quality("text/html") > quality("application/json")


def browser():
    # Raw environ, not bottle's get_header(): that one fails on a header that is not UTF-8.
    return prefers_html(bottle.request.environ.get("HTTP_ACCEPT", ""))


def refuse_cross_site():
    """SameSite=Lax keeps the cookie off other sites' form posts, but a browser
    still stores the Set-Cookie of the answer: another site could log a visitor
    in as someone else, or out (login CSRF).  Refuse what the browser says came
    from elsewhere (OWASP CSRF Cheat Sheet: Fetch Metadata, then Origin)."""
    environ = bottle.request.environ
    site, origin = environ.get("HTTP_SEC_FETCH_SITE"), environ.get("HTTP_ORIGIN")
    if site is not None:
        foreign = site not in ("same-origin", "none")
    else:
        foreign = origin is not None and urllib.parse.urlsplit(origin).netloc != environ.get("HTTP_HOST")
    if foreign:
        bottle.abort(403, "cross-site form posts are refused")


def logged_in_name(session):
    """The logged-in user's name, or None (no user, logged out, or not ours to read)."""
    user = session.get("user")
    ok = isinstance(user, dict) and user.get("isLoggedIn") is True and isinstance(user.get("name"), str)
    return user["name"] if ok else None


def short(text):
    return html.escape(text[:6]) + "&hellip;"


def duration(seconds):
    minutes = int(max(0, seconds)) // 60
    return f"{minutes // 60} h {minutes % 60:02d} min"


def teaching_page(interface, session, cookie_header, error=None):
    """The visitor's own session, as the server sees it.  Everything is escaped."""
    name = logged_in_name(session)
    if name:
        body = (f'<p>Signed in as <strong>{html.escape(name)}</strong>.</p>'
                '<form method="post" action="/logout"><button>Log out</button></form>')
    else:
        body = ('<form method="post" action="/"><label>Your name <input name="name" maxlength="100" '
                'required autofocus></label> <button>Sign in</button></form>')
    if error:
        body = f'<p class="error" role="alert">{html.escape(error)}</p>' + body
    options, now = interface.options, interface.clock()
    raw, verified_id = interface.read_cookie(cookie_header)
    if raw is None:
        panel = "<p>Your browser sent no session cookie.</p>"
    else:
        sid, _, signature = raw[2:].rpartition(".") if raw.startswith("s:") else ("", "", "")
        verified = verified_id is not None
        panel = (f"<dl><dt>Cookie <code>{html.escape(options.cookie_name)}</code> as sent</dt>"
                 f"<dd><code>s:</code> prefix &middot; id <code>{short(sid)}</code> &middot; "
                 f"signature <code>{short(signature)}</code> &mdash; "
                 f"{'the signature verified' if verified else 'the signature did not verify'}</dd>")
        if session.is_new:
            panel += "<dt>Stored document</dt><dd>none: this cookie names no live session</dd></dl>"
        else:
            absolute = (f"ends in {duration(session.absolute_expires - now)} however active"
                        if session.absolute_expires else "unknown (written by another service)")
            panel += (f"<dt>Stored document</dt><dd><pre>{{ _id: &quot;{short(session.id)}&quot;,\n"
                      f"  expires: ISODate(&quot;{sessions.to_iso(session.expires)}&quot;),\n"
                      f"  session: '{html.escape(session.stored)}' }}</pre></dd>"
                      f"<dt>Lifetimes</dt><dd>idle: gone in {duration(session.expires - now)} unless used; "
                      f"absolute: {absolute}</dd></dl>")
    return PAGE.format(body=body, panel=panel)


def make_app(interface, *, trust_proxy=False):
    """The Bottle app: the seed's three routes plus health checks."""
    app = bottle.Bottle()

    def json_error(error):
        bottle.response.content_type = "application/json"
        bottle.response.set_header("Cache-Control", "no-store")
        bottle.response.set_header("Vary", "Cookie")  # abort() replaced the headers with_session set
        if error.exception is not None:  # not an abort(): an unexpected exception
            log.error("unhandled error: %r", error.exception)
            return json.dumps({"error": "internal server error"})
        return json.dumps({"error": error.body})
    app.default_error_handler = json_error

    def with_session(route):
        """Open the session before the route and save it after, before the
        response leaves: a 2xx means the change is in the store."""
        @functools.wraps(route)
        def wrapper(*args, **kwargs):
            environ = bottle.request.environ
            # The answer depends on the cookie: no shared cache may keep it for someone else.
            bottle.response.set_header("Cache-Control", "no-store")
            bottle.response.set_header("Vary", "Cookie")
            try:
                session = interface.open_session(environ.get("HTTP_COOKIE"))
                result = route(session, *args, **kwargs)
                # An error answer stores nothing: a bad request changes nothing already stored.
                ok = bottle.response.status_code < 400
                cookie = interface.save_session(session, https=is_https(environ, trust_proxy)) if ok else None
            except PyMongoError as exc:
                log.warning("session store unavailable: %s", type(exc).__name__)
                bottle.abort(503, "the session store is unavailable; try again shortly")
            except sessions.SessionConflict as exc:
                bottle.abort(409, str(exc))
            if cookie:
                bottle.response.add_header("Set-Cookie", cookie)
            return result
        return wrapper

    def see_other():
        """After a browser's form post: back to the page (POST/redirect/GET)."""
        bottle.response.status = 303
        bottle.response.set_header("Location", "/")
        return ""

    @app.get("/")
    @with_session
    def page(session):
        return teaching_page(interface, session, bottle.request.environ.get("HTTP_COOKIE"))

    @app.post("/")
    @with_session
    def login(session):
        refuse_cross_site()
        environ = bottle.request.environ
        try:
            name = read_name(environ)
        except bottle.HTTPError as error:
            if not browser():
                raise
            bottle.response.status = error.status_code
            return teaching_page(interface, session, environ.get("HTTP_COOKIE"), error=error.body)
        session.regenerate()  # a new id at login: a planted id is worth nothing (session fixation)
        session["user"] = {"name": name, "isLoggedIn": True}
        return see_other() if browser() else {"name": name}

    @app.post("/logout")
    @with_session
    def logout(session):
        refuse_cross_site()
        session.destroy()
        return see_other() if browser() else {"loggedOut": True}

    @app.get("/name")
    @with_session
    def name(session):
        name = logged_in_name(session)
        if name is None:
            bottle.abort(404, "not logged in")  # the seed crashes with a 500 here
        return {"name": name}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        try:
            interface.store.ping()
        except PyMongoError as exc:
            log.warning("readiness: session store unavailable: %s", type(exc).__name__)
            bottle.abort(503, "the session store is unavailable")
        return {"status": "ready"}

    return app


def with_access_log(app):
    """One line per request: method, path, status, milliseconds.  Never the
    query string, a cookie or a header: they can carry secrets."""
    def logged(environ, start_response):
        started, status = time.perf_counter(), ["-"]

        def start(line, headers, exc_info=None):
            status[0] = line[:3]
            return start_response(line, headers, exc_info)
        try:
            return app(environ, start)
        finally:
            path = urllib.parse.quote(environ.get("PATH_INFO", ""), safe="/")  # no raw control characters
            elapsed = (time.perf_counter() - started) * 1000
            log.info("%s %s %s %.1fms", environ.get("REQUEST_METHOD"), path, status[0], elapsed)
    return logged


# --- Serving ---


def serve(app, host, port, store_kind, stopping):
    """Serve with waitress until `stopping` is set (SIGINT/SIGTERM), then stop
    accepting, let in-flight requests finish (at most DRAIN_FOR seconds) and return."""
    from waitress import wasyncore
    from waitress.channel import HTTPChannel
    from waitress.server import create_server

    # Waitress buffers a whole body before the app sees it: cap it well above MAX_BODY.
    try:
        server = create_server(app, host=host, port=port, max_request_body_size=64 * MAX_BODY)
    except (OSError, ValueError) as exc:  # port in use, no such address
        log.error("cannot listen on %s:%s: %s", host, port, exc)
        return False
    log.info("listening on http://%s:%s (store: %s)", server.effective_host, server.effective_port, store_kind)
    while not stopping.is_set():
        wasyncore.loop(timeout=0.5, map=server._map, count=1)

    log.info("stopping: finishing requests in flight")
    server.del_channel()  # stop listening; connections already accepted go on
    server.socket.close()
    deadline = time.monotonic() + DRAIN_FOR
    # In flight: a request partly received (ch.request), queued or running
    # (ch.requests), or a response not yet sent (ch.total_outbufs_len).
    while time.monotonic() < deadline and any(
            isinstance(ch, HTTPChannel) and (ch.request or ch.requests or ch.total_outbufs_len)
            for ch in list(server._map.values())):
        wasyncore.loop(timeout=0.05, map=server._map, count=1)
    server.task_dispatcher.shutdown(timeout=1)
    wasyncore.close_all(server._map)
    return True


def main(env=os.environ):
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("waitress").setLevel(logging.WARNING)  # our own startup and access lines suffice
    stopping = threading.Event()  # set by SIGINT/SIGTERM, from the first moment on: exit 0, no traceback
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        settings = settings_from_env(env)
        if settings.mongo_url:
            kind, collection = "mongodb", open_mongo_collection(settings.mongo_url, settings.collection)
        else:
            kind, collection = "embedded in-memory", open_embedded_collection(settings.collection)
    except ConfigError as exc:
        print(f"service.py: {exc}", file=sys.stderr)
        return 2
    if settings.random_secret:
        log.warning("SESSION_SECRET is not set: signing with a random secret; sessions end when the process stops")
    store = sessions.MongoStore(collection)
    try:  # the embedded store gets none: mongomock's TTL emulation scans every document on every call
        if settings.mongo_url:
            log.info("ensuring the TTL index on '%s.expires'", settings.collection)
            store.ensure_indexes()
    except PyMongoError as exc:
        if stopping.is_set():
            return 0
        log.error("could not ensure the TTL index on 'expires': %s: %s", type(exc).__name__, exc)
        return 1
    if not settings.mongo_url:
        log.warning("no MONGO_URL: sessions are kept in memory and lost when the process stops")
        threading.Thread(target=purge_periodically, args=(store, stopping), daemon=True).start()
    app = make_app(sessions.SessionInterface(store, settings.options), trust_proxy=settings.trust_proxy)
    if not stopping.is_set() and not serve(with_access_log(app), settings.host, settings.port, kind, stopping):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
