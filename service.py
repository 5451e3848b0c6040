"""The seed service: log in with a name, read it back, log out.

    python service.py          # http://127.0.0.1:4000, embedded in-memory store

Configuration comes from the environment (see README.md).  With MONGO_URL the
sessions live in MongoDB; without it, in this process's memory (lost on
restart).  Sessions themselves (cookie, signing, lifetimes, stores) are
sessions.py; this file is wiring: settings, the store, a Bottle plugin that
gives routes their session, the routes, and serving with waitress.
"""

import collections
import contextlib
import functools
import inspect
import ipaddress
import json
import logging
import os
import queue
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
MAX_NAME = 100  # characters, after trimming and NFC normalisation
DRAIN_FOR = 10  # seconds in-flight requests may take to finish after SIGTERM
IDLE_TIMEOUT = 30  # seconds a connection may sit idle (waitress's channel_timeout; its default is 120)

# --- Configuration ---


class ConfigError(ValueError):
    """Raised if an environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    mongo_url: str | None
    collection: str
    trust_proxy: str | None  # None, "*" (any peer) or the proxy's address: who may set X-Forwarded-Proto
    threads: int  # waitress worker threads
    connection_limit: int  # open connections waitress accepts before it stops accepting
    access_log: bool
    max_sessions: int | None  # cap of the embedded store; None: no cap
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
            cookie_secure=choice("COOKIE_SECURE", "auto", {"auto": "auto", "true": True, "false": False}))
    except sessions.OptionError as exc:
        raise ConfigError(f"{ENV_OF_OPTION.get(exc.option, exc.option)}: {exc}") from None
    collection = get("SESSION_COLLECTION", "sessions")
    if "$" in collection or "\0" in collection or "" in collection.split(".") or collection.startswith("system."):
        raise ConfigError(f"SESSION_COLLECTION must be a MongoDB collection name (no '$', not system.*), "
                          f"got {collection!r}")
    trust = get("TRUST_PROXY", "0")
    if trust not in ("0", "1"):
        try:
            trust = str(ipaddress.ip_address(trust))
        except ValueError:
            raise ConfigError(f"TRUST_PROXY must be 0, 1 (any peer) or the proxy's IP address, got {trust!r}") from None
    return Settings(host=get("HOST", "127.0.0.1"), port=whole("PORT", 4000, 0, 65535), mongo_url=get("MONGO_URL"),
                    collection=collection, trust_proxy={"0": None, "1": "*"}.get(trust, trust),
                    threads=whole("THREADS", 8, 1, 256), connection_limit=whole("CONNECTION_LIMIT", 1000, 1, 100_000),
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
    seconds; its success closes it.  Errors become sessions.StoreUnavailable."""

    def __init__(self, store, slots, stalled_after=0.5, retry_after=1.0, clock=time.monotonic):
        self.store, self.stalled_after, self.retry_after, self.clock = store, stalled_after, retry_after, clock
        self._slots = queue.SimpleQueue()  # one token per slot: C, where a Semaphore is Python over a Condition
        for _ in range(slots):
            self._slots.put(None)
        self._lock = threading.Lock()
        self._started = {}  # thread id -> when its store call began
        self._down, self._probing, self._probe_at = False, False, 0.0

    def __getattr__(self, name):  # load, insert, compare_and_set, touch, delete, purge, ping
        guarded = functools.partial(self._call, getattr(self.store, name))
        setattr(self, name, guarded)  # made once: later calls find it without __getattr__
        return guarded

    def _call(self, method, *args):
        with self._lock:
            probe = self._down and not self._probing and self.clock() >= self._probe_at
            if self._down and not probe:
                raise sessions.StoreUnavailable("the store failed; a probe tries it again shortly")
            self._probing |= probe
        try:
            self._take_slot()
            try:  # from here on the slot goes back whatever happens, here only: a queue would not notice a second put
                self._started[threading.get_ident()] = self.clock()
                result = method(*args)
            finally:
                self._started.pop(threading.get_ident(), None)
                self._slots.put(None)
        except PyMongoError as exc:
            if isinstance(exc, ConnectionFailure) or exc.timeout:
                self._down, self._probe_at = True, self.clock() + self.retry_after
            raise sessions.StoreUnavailable(type(exc).__name__) from exc
        finally:
            if probe:
                self._probing = False
        self._down = False
        return result

    def _take_slot(self):
        """A slot frees within milliseconds unless a call hangs: then fail at once."""
        try:
            return self._slots.get_nowait()
        except queue.Empty:
            pass
        while True:
            oldest = min(tuple(self._started.values()), default=None)
            if oldest is not None and self.clock() - oldest > self.stalled_after:
                raise sessions.StoreUnavailable("every store slot waits on a call that hangs")
            try:
                return self._slots.get(timeout=0.02)
            except queue.Empty:
                pass


def open_store(settings):
    """The store, its name for the startup line, and the work it needs before serving (or None)."""
    if not settings.mongo_url:
        return sessions.MemoryStore(max_sessions=settings.max_sessions), "embedded in-memory", None
    mongo = sessions.MongoStore(open_mongo_collection(settings.mongo_url, settings.collection))
    return GuardedStore(mongo, slots=max(1, settings.threads - 1)), "mongodb", mongo.ensure_indexes


# --- Requests ---

STORE_DOWN = (sessions.StoreUnavailable, PyMongoError)  # PyMongoError: a MongoStore used without GuardedStore


def is_https(environ):
    # waitress sets the scheme from X-Forwarded-Proto only for the proxy TRUST_PROXY names.
    return environ.get("wsgi.url_scheme") == "https"


def read_name(environ):
    """The login name from a JSON or form body; abort with 400/413/415 otherwise."""
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
    # Browsers send a few fixed Accept headers: remember the answer for 64 of up to 1 KB (64 KB at most).
    return (_prefers_html if len(accept) <= 1024 else _prefers_html.__wrapped__)(accept)


@functools.lru_cache(maxsize=64)
def _prefers_html(accept):
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
    ok = isinstance(user, dict) and user.get("isLoggedIn") is True and isinstance(user.get("name"), str)
    return user["name"] if ok else None


# --- Sessions in routes: a Bottle plugin ---

PRIVATE = [("Cache-Control", "no-store"), ("Vary", "Cookie")]  # an answer no shared cache may keep for someone else


class SessionPlugin:
    """Bottle plugin (API v2, as bottle-sqlite injects `db`): a route that takes
    a `session` argument gets the request's session, saved after the route
    returns and before the response leaves, so a 2xx means the change is in the
    store.  An error answer (>= 400, or an abort) stores nothing.  With
    `private` (the default) its answers say Cache-Control: no-store and Vary:
    Cookie; the service passes False because outermost() marks every answer."""

    name, api = "session", 2

    def __init__(self, interface, keyword="session", private=True):
        self.interface, self.keyword, self.private = interface, keyword, private

    def apply(self, callback, route):
        if self.keyword not in inspect.signature(route.callback).parameters:
            return callback  # this route does not ask for a session: no store work at all
        interface, keyword, private = self.interface, self.keyword, self.private

        @functools.wraps(callback)
        def with_session(*args, **kwargs):
            environ, response = bottle.request.environ, bottle.response
            try:
                session = interface.open_session(environ.get("HTTP_COOKIE"))
                result = callback(*args, **kwargs, **{keyword: session})
                ok = response.status_code < 400
                cookie = interface.save_session(session, https=is_https(environ)) if ok else None
            except sessions.StoreFull:
                bottle.abort(503, "the session store is full (SESSION_MEMORY_MAX_SESSIONS); try again later")
            except STORE_DOWN as exc:
                # GuardedStore's messages are its own; a driver's may name hosts: only its type.
                log.warning("session store unavailable: %s", exc if isinstance(exc, sessions.StoreUnavailable)
                            else type(exc).__name__)
                bottle.abort(503, "the session store is unavailable; try again shortly")
            except sessions.SessionConflict as exc:
                bottle.abort(409, str(exc))
            except sessions.SessionDataError as exc:
                bottle.abort(400, str(exc))
            if private:  # the answer depends on the cookie; set after the route: an abort() has new headers
                for name, value in PRIVATE:
                    response.set_header(name, value)
            if cookie:
                response.add_header("Set-Cookie", cookie)
            return result
        return with_session


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


# --- The app ---


def json_error(error):
    bottle.response.content_type = "application/json"
    if error.exception is not None:  # not an abort(): an unexpected exception
        log.error("unhandled error: %r", error.exception)
        return json.dumps({"error": "internal server error"})
    return json.dumps({"error": error.body})


def see_other():
    """After a browser's form post: back to the page (POST/redirect/GET)."""
    bottle.response.status = 303
    bottle.response.set_header("Location", "/")
    return ""


def make_app(interface):
    """The Bottle app: the seed's three routes, the teaching page and health checks."""
    app = bottle.Bottle()
    app.default_error_handler = json_error
    app.install(SessionPlugin(interface, private=False))  # outermost() marks every answer private

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
        return see_other() if browser() else {"name": name}

    @app.post("/logout")
    def logout(session):
        refuse_cross_site()
        session.destroy()
        return see_other() if browser() else {"loggedOut": True}

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
        try:
            interface.store.ping()
        except STORE_DOWN as exc:
            log.warning("readiness: session store unavailable: %s", type(exc).__name__)
            bottle.abort(503, "the session store is unavailable")
        return {"status": "ready"}

    return app


class AccessLog:
    """Access lines, written to `stream` in batches at most `every` seconds apart.
    A write per request costs each request a system call and a hand-off of the
    GIL (about a tenth of a bare Bottle request, measured); an append costs neither."""

    def __init__(self, stream=sys.stderr, every=0.1):
        self.stream, self._lines = stream, collections.deque()
        self.write = self._lines.append  # deque.append and popleft are atomic: no lock
        threading.Thread(target=self._flush_every, args=(every,), daemon=True).start()

    def flush(self):
        lines = []
        with contextlib.suppress(IndexError):
            while True:
                lines.append(self._lines.popleft())
        if lines:
            self.stream.write("".join(lines))
            self.stream.flush()

    def _flush_every(self, every):
        while True:
            time.sleep(every)
            self.flush()


EVERY_RESPONSE = [("X-Content-Type-Options", "nosniff"), *PRIVATE]
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~-]*")  # what quote(safe="/") leaves as it is


def outermost(app, access_log=None, clock=time.time):
    """What every response gets, whatever answered it (Bottle, a route, an error):
    X-Content-Type-Options: nosniff (a browser never guesses a JSON body is HTML),
    PRIVATE (most answers depend on the cookie; the rest are errors and health
    checks, which no cache should keep either), and, if `access_log` (anything
    with write()) is given, one line: time, method, path, status, milliseconds.
    Never the query string, a cookie or a header: they can carry secrets."""
    second = [None, ""]  # the last whole second and its formatted form: strftime once a second

    def handle(environ, start_response):
        started, status, path = clock(), "-", environ.get("PATH_INFO", "")

        def start(line, headers, exc_info=None):
            nonlocal status
            status = line[:3]
            headers += EVERY_RESPONSE
            return start_response(line, headers, exc_info)
        try:
            try:  # WSGI gives the path's bytes as latin-1; Bottle would drop bytes that are not UTF-8 (/%ff -> /)
                path.isascii() or path.encode("latin-1").decode("utf-8")
            except UnicodeError:
                start("400 Bad Request", [("Content-Type", "application/json")])
                return [b'{"error": "the path is not valid UTF-8"}']
            return app(environ, start)
        finally:
            if access_log:
                now = clock()
                if int(now) != second[0]:
                    second[:] = int(now), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
                sent = path  # as the client sent it (PEP 3333: bytes as latin-1), escaped: no raw control characters
                if not _PLAIN_PATH.fullmatch(path):
                    sent = urllib.parse.quote(path.encode("latin-1", "replace"), safe="/")
                access_log.write(f"{second[1]},{int(now * 1000) % 1000:03d} INFO {environ.get('REQUEST_METHOD')} "
                                 f"{sent} {status} {(now - started) * 1000:.1f}ms\n")
    return handle


# --- Serving ---


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


# Not mutated (the pragma below): drain, serve and main run in child processes, where mutmut cannot see
# the tests that cover them over real sockets (test_process.py, test_hardening.py, test_wire.py, test_proxy.py).
# pragma: no mutate start
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
        wasyncore.dispatcher.close(listener)  # the socket only: BaseWSGIServer.close() also ends the wake-up trigger

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
    trust = {"trusted_proxy": settings.trust_proxy, "trusted_proxy_headers": {"x-forwarded-proto"}}
    try:
        server = create_server(
            app, map=channels, host=settings.host, port=settings.port, threads=settings.threads,
            connection_limit=settings.connection_limit, channel_timeout=IDLE_TIMEOUT,
            ident="",  # no "Server: waitress" (OWASP: naming the server software points to its known flaws)
            asyncore_use_poll=True,  # poll(), not select(): no 1024-descriptor ceiling
            max_request_body_size=64 * MAX_BODY,  # waitress buffers a whole body first: cap it well above MAX_BODY
            **(trust if settings.trust_proxy else {}))
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
    # "Task queue depth is N": one line per request that waits for a thread, a write each, just when busiest.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    stopping = threading.Event()  # set by SIGINT/SIGTERM, from the first moment on: exit 0, no traceback
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        settings = settings_from_env(env)
        store, kind, startup = open_store(settings)
    except ConfigError as exc:
        print(f"service.py: {exc}", file=sys.stderr)
        return 2
    if settings.random_secret:
        log.warning("SESSION_SECRET is not set: signing with a random secret; sessions end when the process stops")
    elif len(settings.options.secrets[0]) < 32:  # never echo it
        log.warning("SESSION_SECRET is shorter than 32 characters: guessable offline from one cookie; "
                    "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    if startup is None:
        log.warning("no MONGO_URL: sessions are kept in memory and lost when the process stops")
    else:
        try:
            log.info("ensuring the TTL index on '%s.expires'", settings.collection)
            startup()
        except PyMongoError as exc:
            if stopping.is_set():
                return 0
            log.error("could not ensure the TTL index on 'expires': %s: %s", type(exc).__name__, exc)
            return 1
    access_log = AccessLog() if settings.access_log else None
    app = outermost(make_app(sessions.SessionInterface(store, settings.options)), access_log)
    try:
        return 0 if stopping.is_set() or serve(app, settings, kind, stopping) else 1
    finally:
        if access_log:
            access_log.flush()


# pragma: no mutate end


if __name__ == "__main__":
    sys.exit(main())
