"""The seed service: log in with a name, read it back, log out.

    python service.py          # http://127.0.0.1:4000, embedded in-memory store

What a request goes through, in the order of this file:

1. waitress reads it off the socket (serve(), near the end);
2. outermost() believes a forwarded scheme only from the trusted proxy, and
   gives every answer its protective headers and an access line;
3. Bottle routes it; a route that takes a `session` argument gets one from
   SessionPlugin, opened from the Cookie header (sessions.py verifies it);
4. the route does its work (make_app), with the request helpers below it;
5. after the route, the plugin saves what changed and adds Set-Cookie, before
   the answer leaves: a 2xx means the change is in the store.

Then the teaching page, configuration from the environment, the store
(MongoDB with MONGO_URL, else this process's memory), serving, and main().
"""

import functools
import inspect
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import sys
import threading
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass

import bottle
import pymongo
from pymongo.errors import ConnectionFailure, PyMongoError
from pymongo.uri_parser import parse_uri

import sessions

log = logging.getLogger("service")

MAX_BODY = 16 * 1024  # bytes of request body on POST /
MAX_NAME = 100  # characters, after trimming and normalisation
DRAIN_FOR = 10  # seconds in-flight requests may take to finish after SIGTERM
IDLE_TIMEOUT = 30  # seconds a connection may sit idle (waitress's channel_timeout; its default is 120)

# --- Sessions in routes: a Bottle plugin ---

# An answer that depends on the cookie: no shared cache may keep it for someone else.
PRIVATE = [("Cache-Control", "no-store"), ("Vary", "Cookie")]


class SessionPlugin:
    """Bottle plugin (API v2, as bottle-sqlite hands routes a `db`): a route
    that takes a `session` argument gets the request's session.  It is saved
    after the route, however the route answers - a returned value, a returned
    or raised HTTPResponse (bottle.redirect() raises one) - and before the
    answer leaves, so a 2xx or 3xx means the change is in the store; the
    Set-Cookie goes on that very answer.  An error answer (status >= 400, an
    abort()) stores nothing.  Every answer it handles says Cache-Control:
    no-store and Vary: Cookie."""

    name, api = "session", 2

    def __init__(self, interface, keyword="session"):
        self.interface, self.keyword = interface, keyword

    def setup(self, app):
        for other in app.plugins:
            if isinstance(other, SessionPlugin) and other is not self and other.keyword == self.keyword:
                raise bottle.PluginError(f"another SessionPlugin already passes '{self.keyword}' to routes")

    def apply(self, callback, route):
        if self.keyword not in inspect.signature(route.callback).parameters:
            return callback  # this route does not ask for a session: no store work at all

        @functools.wraps(callback)
        def with_session(*args, **kwargs):
            session = self.open(bottle.request.environ)
            try:
                result = callback(*args, **kwargs, **{self.keyword: session})
            except bottle.HTTPResponse as raised:  # redirect() and abort() raise their answer
                self.finish(session, raised)
                raise
            self.finish(session, result if isinstance(result, bottle.HTTPResponse) else bottle.response)
            return result
        return with_session

    def open(self, environ):
        with store_errors():
            return self.interface.open_session(
                environ.get("HTTP_COOKIE"), https=is_https(environ), client=environ.get("HTTP_USER_AGENT"),
                path=request_path(environ))

    def finish(self, session, answer):
        """Save the session unless the answer is an error, and put the headers on that answer."""
        for name, value in PRIVATE:
            answer.set_header(name, value)
        if answer.status_code >= 400:
            return
        with store_errors():
            cookie = self.interface.save_session(session)
        if cookie:
            answer.add_header("Set-Cookie", cookie)  # beside any the route set itself


class store_errors:
    """A with-block in which a session error becomes its HTTP answer (Bottle's HTTPError)."""

    ANSWERS = [  # the first that matches; StoreFull before the StoreUnavailable it is
        (sessions.StoreFull, 503, "the session store is full; try again later"),
        (sessions.StoreUnavailable, 503, "the session store is unavailable; try again shortly"),
        (sessions.SessionConflict, 409, None),
        (sessions.SessionDataError, 400, None),
        (sessions.InsecureTransport, 403, None),
    ]

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        for error_kind, status, message in self.ANSWERS if error is not None else ():
            if isinstance(error, error_kind):
                if status == 503:
                    log.warning("session store: %s", error)  # its type or our own words, never a host
                raise bottle.HTTPError(status, message or str(error), **dict(PRIVATE)) from None
        return False


# --- The routes ---


def make_app(interface):
    """The Bottle app: the seed's three routes, the teaching page and health checks."""
    app = bottle.Bottle()
    app.default_error_handler = json_error
    app.install(SessionPlugin(interface))

    @app.get("/")
    def page(session):
        return teaching_page(interface, session)

    @app.post("/")
    def login(session):
        refuse_cross_site()
        try:
            name = read_name(bottle.request.environ)
        except bottle.HTTPError as error:
            if not browser():
                raise
            bottle.response.status = error.status_code
            return teaching_page(interface, session, error=error.body)
        session.regenerate()  # a new id at login: a planted id is worth nothing (session fixation)
        session["user"] = {"name": name, "isLoggedIn": True}
        if browser():
            bottle.redirect("/", 303)  # POST/redirect/GET: a reload does not post again
        return {"name": name}

    @app.post("/logout")
    def logout(session):
        refuse_cross_site()
        session.destroy()
        if browser():
            bottle.redirect("/", 303)
        return {"loggedOut": True}

    @app.get("/name")
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
        with store_errors():
            interface.store.ping()
        return {"status": "ready"}

    return app


def json_error(error):
    bottle.response.content_type = "application/json"
    if error.exception is not None:  # not an abort(): an unexpected exception
        log.error("unhandled error: %r", error.exception)
        return json.dumps({"error": "internal server error"})
    return json.dumps({"error": error.body})


# --- Request helpers ---


def request_path(environ):
    """The path as the browser sent it (a mounted app's prefix included): what a cookie's Path is matched to."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("bottle.raw_path", environ.get("PATH_INFO", ""))
    return path or "/"  # an empty path is the root, as Bottle routes it


def is_https(environ):
    # outermost() sets the scheme from X-Forwarded-Proto only for the proxy TRUST_PROXY names.
    return environ.get("wsgi.url_scheme") == "https"


def read_name(environ):
    """The login name from a JSON or form body; abort with 400/413/415 otherwise."""
    # Refuse by the declared length before reading, and count what is read too:
    # a chunked body declares none.
    length = environ.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > MAX_BODY:
        bottle.abort(413, f"the body must be at most {MAX_BODY} bytes")
    # Media types are case-insensitive (RFC 9110 section 8.3.1).
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
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, JSON nested too deep
        bottle.abort(400, "the body is not valid " + ("JSON" if kind == "application/json" else "form data"))
    name = fields.get("name") if isinstance(fields, dict) else None
    if not isinstance(name, str):
        bottle.abort(400, f"name must be a string of 1 to {MAX_NAME} characters")
    return check_name(name)


def check_name(name):
    """Trimmed and NFC-normalised, 1 to MAX_NAME characters, nothing invisible or reordering."""
    # Control (Cc), format (Cf: bidi overrides, zero-width) and surrogate (Cs) characters
    # let a displayed name pass for another ("admin\u202e", "ad\u200bmin").
    name = name.strip()
    bad = {unicodedata.category(c) for c in name} & {"Cc", "Cf", "Cs"}
    if bad:
        kinds = {"Cc": "control", "Cf": "invisible or direction-changing", "Cs": "unpaired surrogate"}
        bottle.abort(400, f"name must not contain {' or '.join(kinds[c] for c in sorted(bad))} characters")
    name = unicodedata.normalize("NFC", name).strip()
    if not 1 <= len(name) <= MAX_NAME:
        bottle.abort(400, f"name must be a string of 1 to {MAX_NAME} characters")
    return name


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
    else:  # Origin is "scheme://host[:port]"; anything else, "null" included, is foreign
        foreign = origin is not None and origin.partition("://")[2] != environ.get("HTTP_HOST")
    if foreign:
        bottle.abort(403, "cross-site form posts are refused")


def logged_in_name(session):
    """The logged-in user's name, or None (no user, logged out, or not ours to read)."""
    user = session.get("user")
    if not isinstance(user, dict) or user.get("isLoggedIn") is not True:
        return None
    name = user.get("name")
    return name if isinstance(name, str) else None


# --- The teaching page ---

PAGE = bottle.SimpleTemplate("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sessions, seen from the server</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222 }
.panel { background: #f5f5f2; border: 1px solid #ddd; border-radius: 6px; padding: 0 1rem 1rem; margin-top: 2rem }
code, pre { font: 14px ui-monospace, monospace } pre { white-space: pre-wrap; word-break: break-all }
.error { color: #a00 } dt { font-weight: 600 } dd { margin: 0 0 .6rem }
</style></head><body><h1>Sessions, seen from the server</h1>
% if error:
<p class="error" role="alert">{{error}}</p>
% end
% if name:
<p>Signed in as <strong>{{name}}</strong>.</p>
<form method="post" action="/logout"><button>Log out</button></form>
% else:
<form method="post" action="/"><label>Your name <input name="name" maxlength="100" required autofocus></label>
<button>Sign in</button></form>
% end
<section class="panel"><h2>What the server sees</h2>
% if raw is None:
<p>Your browser sent no session cookie.</p>
% else:
<dl><dt>Cookie <code>{{cookie_name}}</code> as sent, URL-decoded (on the wire <code>s:</code> is <code>s%3A</code>)</dt>
%   if raw.startswith("s:"):
<dd><code>s:</code> prefix &middot; id <code>{{sid[:6]}}&hellip;</code> &middot;
signature <code>{{signature[:6]}}&hellip;</code> &mdash;
the signature {{"verified" if verified else "did not verify"}}</dd>
%   else:
<dd><code>{{raw[:6]}}&hellip;</code> &mdash; no <code>s:</code> prefix, so not a signed id: ignored</dd>
%   end
%   if session.is_new:
<dt>Stored document</dt><dd>none: this cookie names no live session</dd></dl>
%   else:
<dt>Stored document</dt><dd><pre>{ _id: "{{session.id[:6]}}&hellip;",
  expires: ISODate("{{expires}}"),
  session: '{{session.stored}}' }</pre></dd>
<dt>Lifetimes</dt><dd>idle: gone in {{idle}} unless used; absolute: {{absolute}}</dd></dl>
%   end
% end
<p>JavaScript on this page cannot read the session cookie: it is <code>HttpOnly</code>.
Ids and signatures show only their first 6 characters, because a script could read a
full id from the page and replay it, which would undo HttpOnly.</p></section>
</body></html>""")

# No scripts, no framing (clickjacking), forms post only here; inline style is the page's own.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
                "Referrer-Policy": "same-origin"}


def duration(seconds):
    minutes = int(max(0, seconds)) // 60
    return f"{minutes // 60} h {minutes % 60:02d} min"


def teaching_page(interface, session, error=None):
    """The visitor's own session, as the server sees it; the template escapes everything."""
    for header, value in PAGE_HEADERS.items():
        bottle.response.set_header(header, value)
    raw, verified = interface.read_cookie(bottle.request.environ.get("HTTP_COOKIE"))
    sid, _, signature = raw[2:].rpartition(".") if raw else ("", "", "")
    now, deadline = interface.clock(), session.absolute_expires
    return PAGE.render(name=logged_in_name(session), error=error, cookie_name=interface.options.cookie_name,
                       raw=raw, sid=sid, signature=signature, verified=verified is not None, session=session,
                       expires=session.expires and sessions.to_iso(session.expires),
                       idle=session.expires and duration(session.expires - now),
                       absolute=f"ends in {duration(deadline - now)} however active" if deadline
                       else "unknown (written by another service)")


# --- Configuration ---


class ConfigError(ValueError):
    """Raised if an environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    mongo_url: str | None
    collection: str
    trust_proxy: str | None  # None, "*" (any peer) or the proxy's address: whose X-Forwarded-* count
    threads: int  # waitress worker threads
    connection_limit: int  # open connections waitress accepts before it stops accepting
    access_log: bool
    max_sessions: int | None  # cap of the embedded store; None: no cap
    random_secret: bool  # no SESSION_SECRET was given
    options: sessions.Options


# Which variable sets which sessions.Options field, to name it in errors.
ENV_OF_OPTION = {"secrets": "SESSION_SECRET", "cookie_name": "SESSION_COOKIE_NAME",
                 "max_age": "SESSION_MAX_AGE", "absolute_timeout": "SESSION_ABSOLUTE_TIMEOUT",
                 "touch_after": "SESSION_TOUCH_AFTER", "cookie_samesite": "SESSION_SAMESITE",
                 "cookie_secure": "COOKIE_SECURE"}


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

    def whole(name, default, low, high):
        raw = get(name, str(default))
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
        return int(raw)

    def choice(name, default, choices):
        raw = get(name, default).lower()
        if raw not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return choices[raw]

    secret = get("SESSION_SECRET")
    keys = [s.strip() for s in secret.split(",")] if secret else [secrets.token_urlsafe(32)]
    try:
        options = sessions.Options(
            secrets=tuple(keys),
            cookie_name=get("SESSION_COOKIE_NAME", "example.sid"),
            max_age=seconds("SESSION_MAX_AGE", 7 * 3600),
            absolute_timeout=seconds("SESSION_ABSOLUTE_TIMEOUT", 24 * 3600),
            touch_after=seconds("SESSION_TOUCH_AFTER", None),
            cookie_secure=choice("COOKIE_SECURE", "auto", {"auto": "auto", "true": True, "false": False}),
            cookie_samesite=choice("SESSION_SAMESITE", "lax", {k: k for k in sessions.SAMESITE}),
            browser_session_cookie=choice("SESSION_BROWSER_COOKIE", "0", {"1": True, "0": False}))
    except sessions.OptionError as exc:
        raise ConfigError(f"{ENV_OF_OPTION.get(exc.option, exc.option)}: {exc}") from None
    collection = get("SESSION_COLLECTION", "sessions")
    bad_name = "$" in collection or "\0" in collection or "" in collection.split(".")
    if bad_name or collection.startswith("system."):
        raise ConfigError(f"SESSION_COLLECTION must be a MongoDB collection name (no '$', not system.*), "
                          f"got {collection!r}")
    trust = get("TRUST_PROXY", "0")
    if trust not in ("0", "1"):
        try:
            trust = str(ipaddress.ip_address(trust))
        except ValueError:
            raise ConfigError(f"TRUST_PROXY must be 0, 1 (any peer) or the proxy's IP address, "
                              f"got {trust!r}") from None
    return Settings(host=get("HOST", "127.0.0.1"), port=whole("PORT", 4000, 0, 65535), mongo_url=get("MONGO_URL"),
                    collection=collection, trust_proxy={"0": None, "1": "*"}.get(trust, trust),
                    threads=whole("THREADS", 8, 1, 256),
                    connection_limit=whole("CONNECTION_LIMIT", 1000, 1, 100_000),
                    access_log=choice("ACCESS_LOG", "1", {"1": True, "0": False}),
                    max_sessions=whole("SESSION_MEMORY_MAX_SESSIONS", 1_000_000, 0, 10**9) or None,
                    random_secret=secret is None, options=options)


# --- The store ---

# w=majority unless MONGO_URL says otherwise: an acknowledged login survives a
# replica-set failover.  timeoutMS bounds a whole store operation, server
# selection and retries included, so an outage is a 503 within it, not a hung
# request.  The URL's own timeoutMS wins; else the smallest of the URL's
# per-step timeouts becomes it (alone, each bounds one step: a read retried
# after a socket timeout takes twice as long, a reselection up to 30 s).
MONGO_DEFAULTS = {"w": "majority", "timeoutMS": 5000}
STEP_TIMEOUTS = ("connecttimeoutms", "serverselectiontimeoutms", "sockettimeoutms", "waitqueuetimeoutms")


def mongo_options(url_options):
    """What the service adds to MONGO_URL's options (given with lower-case names, as pymongo parses them)."""
    added = {k: v for k, v in MONGO_DEFAULTS.items() if k.lower() not in url_options}
    steps = [url_options[k] for k in STEP_TIMEOUTS if k in url_options]  # seconds, as parse_uri gives them
    if "timeoutMS" in added and steps:
        added["timeoutMS"] = int(min(steps) * 1000)
    return added


def open_mongo_collection(url, name):
    try:
        given = {key.lower(): value for key, value in parse_uri(url)["options"].items()}
        client = pymongo.MongoClient(url, **mongo_options(given))
    except (PyMongoError, ValueError) as exc:
        raise ConfigError(f"MONGO_URL is not a usable MongoDB URL: {exc}") from None
    return client.get_default_database(default="sessions")[name]


class GuardedStore:
    """A MongoStore that cannot take every thread with it when MongoDB hangs.

    A hung MongoDB holds each request for the whole driver timeout; with every
    waitress thread waiting, /healthz would queue behind them and an
    orchestrator would restart a healthy process.  So at most `slots` threads
    wait on the store (the rest serve requests that need none); a request that
    finds no slot fails at once if a call has hung for `stalled_after` seconds;
    and after a connection failure or a timeout (a circuit breaker, open)
    requests fail fast, but for one probe at a time every `retry_after`
    seconds; its success closes it."""

    def __init__(self, store, slots, stalled_after=0.5, retry_after=1.0, clock=time.monotonic):
        self.store, self.stalled_after, self.retry_after, self.clock = store, stalled_after, retry_after, clock
        self._slots = threading.BoundedSemaphore(slots)  # raises on a release without an acquire
        self._lock = threading.Lock()
        self._started = {}  # thread id -> when its store call began
        self._down, self._probing, self._probe_at = False, False, 0.0

    def load(self, *args):
        return self._call(self.store.load, args)

    def insert(self, *args, **kwargs):
        return self._call(lambda: self.store.insert(*args, **kwargs), ())

    def compare_and_set(self, *args):
        return self._call(self.store.compare_and_set, args)

    def touch(self, *args):
        return self._call(self.store.touch, args)

    def delete(self, *args):
        return self._call(self.store.delete, args)

    def owned(self, *args):
        return self._call(self.store.owned, args)

    def delete_owned(self, *args, **kwargs):
        return self._call(lambda: self.store.delete_owned(*args, **kwargs), ())

    def purge(self, *args):
        return self._call(self.store.purge, args)

    def ping(self):
        return self._call(self.store.ping, ())

    def _call(self, method, args):
        with self._lock:
            probe = self._down and not self._probing and self.clock() >= self._probe_at
            if self._down and not probe:
                raise sessions.StoreUnavailable("the store failed; a probe tries it again shortly")
            if probe:
                self._probing = True
        try:
            self._take_slot()
            try:
                self._started[threading.get_ident()] = self.clock()
                result = method(*args)
            finally:
                self._started.pop(threading.get_ident(), None)
                self._slots.release()
        except sessions.StoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, ConnectionFailure) or getattr(cause, "timeout", False):
                self._down, self._probe_at = True, self.clock() + self.retry_after
            raise
        finally:
            if probe:
                self._probing = False
        self._down = False
        return result

    def _take_slot(self):
        """A slot frees within milliseconds unless a call hangs: then fail at once."""
        while not self._slots.acquire(timeout=0.02):
            oldest = min(tuple(self._started.values()), default=None)
            if oldest is not None and self.clock() - oldest > self.stalled_after:
                raise sessions.StoreUnavailable("every store slot waits on a call that hangs")


def open_store(settings, ensure_indexes=True):
    """The store, and its name for the startup line.  Raises ConfigError for a bad MONGO_URL,
    StoreUnavailable if MongoDB cannot make its indexes."""
    if not settings.mongo_url:
        return sessions.MemoryStore(max_sessions=settings.max_sessions), "embedded in-memory"
    mongo = sessions.MongoStore(open_mongo_collection(settings.mongo_url, settings.collection),
                                driver_error=PyMongoError, ensure_indexes=ensure_indexes)
    return GuardedStore(mongo, slots=max(1, settings.threads - 1)), "mongodb"


# --- Serving ---

EVERY_RESPONSE = [("X-Content-Type-Options", "nosniff"), *PRIVATE]  # unless the answer set its own
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~-]*")  # what quote(safe="/") leaves as it is
FORWARDED = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST",
             "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_BY", "HTTP_FORWARDED")


def outermost(app, access_log=None, trust_proxy=None, clock=time.time):
    """What every request and answer goes through, whatever answers it (Bottle, a route, an error).

    In: X-Forwarded-Proto and -For count only from the proxy `trust_proxy` names
    (see forwarded()); a path that is not UTF-8 is a 400.  Out: nosniff (a
    browser never guesses a JSON body is HTML) and PRIVATE (most answers depend
    on the cookie; the rest are errors and health checks, which no cache should
    keep either), and, if `access_log` (anything with write()) is given, one
    line: time, method, path, status, milliseconds.  Never the query string, a
    cookie or a header: they can carry secrets."""
    def handle(environ, start_response):
        started, status, path = clock(), "-", environ.get("PATH_INFO", "")

        def start(line, headers, exc_info=None):
            nonlocal status
            status = line[:3]
            present = {name.lower() for name, _ in headers}
            headers += [(name, value) for name, value in EVERY_RESPONSE if name.lower() not in present]
            return start_response(line, headers, exc_info)

        def refuse(message):
            start("400 Bad Request", [("Content-Type", "application/json")])
            return [json.dumps({"error": message}).encode()]
        try:
            problem = forwarded(environ, trust_proxy)
            if problem:
                return refuse(problem)
            try:  # WSGI gives the path's bytes as latin-1; Bottle would drop bytes that are not UTF-8
                path.encode("latin-1").decode("utf-8")
            except UnicodeError:
                return refuse("the path is not valid UTF-8")
            return app(environ, start)
        finally:
            if access_log:
                now = clock()
                # As the client sent it (PEP 3333: bytes as latin-1), escaped: no raw control characters.
                sent = path
                if not _PLAIN_PATH.fullmatch(path):
                    sent = urllib.parse.quote(path.encode("latin-1", "replace"), safe="/")
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
                access_log.write(f"{when},{int(now * 1000) % 1000:03d} INFO {environ.get('REQUEST_METHOD')} "
                                 f"{sent} {status} {(now - started) * 1000:.1f}ms\n")
    return handle


def forwarded(environ, trust_proxy):
    """Believe X-Forwarded-Proto and X-Forwarded-For from the trusted proxy only, and
    drop every forwarding header from anyone else, so a client cannot claim HTTPS
    or another address.  Return an error message for a malformed trusted header."""
    peer = environ.get("REMOTE_ADDR")
    if trust_proxy is None or (trust_proxy != "*" and peer != trust_proxy):
        for name in FORWARDED:
            environ.pop(name, None)
        return None
    # Chained proxies send "https, http": the first is what the client used, as express reads it.
    proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
    if proto:
        if proto not in ("http", "https"):
            return "X-Forwarded-Proto must be http or https"
        environ["wsgi.url_scheme"] = proto
    # The last address is the one our proxy saw; earlier ones the client could have written.
    client = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
    if client:
        try:
            environ["REMOTE_ADDR"] = str(ipaddress.ip_address(client))
        except ValueError:
            return "X-Forwarded-For must end with an IP address"
    return None


def strict_framing(listeners):
    """RFC 9112 section 6.3: a request with both Content-Length and Transfer-Encoding
    may be a smuggling attempt; answer it 400 and close the connection.  waitress
    decodes the chunked body and overwrites Content-Length, so the app cannot see
    it: this one function swaps in a parser (waitress's parser_class/channel_class)."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser, ParsingError

    class StrictParser(HTTPRequestParser):
        def parse_header(self, header_plus):
            super().parse_header(header_plus)
            if self.chunked and "CONTENT_LENGTH" in self.headers:
                raise ParsingError("Content-Length and Transfer-Encoding in one request")

    class StrictChannel(HTTPChannel):
        parser_class = StrictParser
    for listener in listeners:
        listener.channel_class = StrictChannel


def drain(listeners, channels, wait_for=DRAIN_FOR, quiet_for=1.0):
    """Stop accepting and let what was accepted finish (at most `wait_for` seconds).
    waitress has no drain API (Pylons/waitress#372), so this one function uses its
    internals: the listeners' accept, the channels' fields."""
    from waitress import wasyncore
    from waitress.channel import HTTPChannel
    for listener in listeners:
        count = -1
        while len(channels) != count:  # a connection the kernel queued but nobody accepted would be reset
            count = len(channels)
            listener.handle_accept()
        wasyncore.dispatcher.close(listener)  # the socket only: BaseWSGIServer.close() also ends the wake-up

    def busy(ch):  # a request partly received, queued, running, or not yet sent; or a connection just used
        return ch.request or ch.requests or ch.total_outbufs_len or time.time() - ch.last_activity < quiet_for
    deadline = time.monotonic() + wait_for
    while time.monotonic() < deadline and any(busy(ch) for ch in list(channels.values())
                                              if isinstance(ch, HTTPChannel)):
        wasyncore.loop(timeout=0.05, map=channels, count=1, use_poll=True)


def serve(app, settings, store_kind, stopping):
    """Serve with waitress until `stopping` is set (SIGINT/SIGTERM), then stop
    accepting, let in-flight requests finish (at most DRAIN_FOR seconds) and return."""
    from waitress import wasyncore
    from waitress.server import BaseWSGIServer, create_server

    channels = {}  # waitress's socket map: listeners and connections
    try:
        server = create_server(
            app, map=channels, host=settings.host, port=settings.port, threads=settings.threads,
            connection_limit=settings.connection_limit, channel_timeout=IDLE_TIMEOUT,
            ident="",  # no "Server: waitress" (OWASP: naming the server software points to its known flaws)
            asyncore_use_poll=True,  # poll(), not select(): no 1024-descriptor ceiling
            clear_untrusted_proxy_headers=False,  # outermost() does it, and reads the trusted ones
            max_request_body_size=64 * MAX_BODY)  # waitress buffers a whole body first: cap it above MAX_BODY
    except (OSError, ValueError) as exc:  # port in use, no such address
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        return False
    listeners = [ch for ch in channels.values() if isinstance(ch, BaseWSGIServer)]
    strict_framing(listeners)
    for listener in listeners:
        host = f"[{listener.effective_host}]" if ":" in listener.effective_host else listener.effective_host
        log.info("listening on http://%s:%s (store: %s)", host, listener.effective_port, store_kind)
    while not stopping.is_set():
        wasyncore.loop(timeout=0.5, map=channels, count=1, use_poll=True)

    log.info("stopping: finishing requests in flight")
    drain(listeners, channels)
    server.task_dispatcher.shutdown(timeout=1)
    wasyncore.close_all(channels)
    return True


def main(env=os.environ):
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("waitress").setLevel(logging.WARNING)  # our own startup and access lines suffice
    # waitress's "Task queue depth is N" is one line per request that waits for a thread: when busiest.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    stopping = threading.Event()  # set by SIGINT/SIGTERM, from the first moment on: exit 0, no traceback
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        settings = settings_from_env(env)
    except ConfigError as exc:
        print(f"service.py: {exc}", file=sys.stderr)
        return 2
    if settings.random_secret:
        log.warning("SESSION_SECRET is not set: signing with a random secret; sessions end when the process stops")
    elif len(settings.options.secrets[0]) < 32:  # never echo it
        log.warning("SESSION_SECRET is shorter than 32 characters: guessable offline from one cookie; "
                    "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    if not settings.mongo_url:
        log.warning("no MONGO_URL: sessions are kept in memory and lost when the process stops")
    else:
        log.info("ensuring the TTL index on '%s.expires' and the owner index", settings.collection)
    try:
        store, kind = open_store(settings)
    except ConfigError as exc:
        print(f"service.py: {exc}", file=sys.stderr)
        return 2
    except sessions.StoreUnavailable as exc:
        if stopping.is_set():
            return 0
        log.error("could not ensure the indexes: MongoDB did not answer (%s)", exc)
        return 1
    interface = sessions.SessionInterface(store, settings.options)
    app = outermost(make_app(interface), sys.stderr if settings.access_log else None, settings.trust_proxy)
    return 0 if stopping.is_set() or serve(app, settings, kind, stopping) else 1


if __name__ == "__main__":
    sys.exit(main())
