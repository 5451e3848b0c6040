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

import contextvars
import functools
import inspect
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass

import bottle
import precis_i18n
import prometheus_client
import pymongo
from pymongo.errors import ConnectionFailure, PyMongoError
from pymongo.uri_parser import parse_uri

import sessions

log = logging.getLogger("service")

MAX_BODY = 16 * 1024  # bytes of request body on POST /
MAX_NAME = 100  # characters, after the RFC 8266 mapping
DRAIN_FOR = 10  # seconds in-flight requests may take to finish after SIGTERM
IDLE_TIMEOUT = 30  # seconds a connection may sit idle (waitress's channel_timeout; default 120)
WARN_EVERY = 10  # seconds: a repeated warning is one line per interval, with a count
READY_TIMEOUT = 1  # seconds a readiness probe waits for the store's ping
ADMIN_PER_CLIENT = 10  # connections one address may hold to the management port

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
    abort()) stores nothing.  With `private` (the default) every answer it handles
    says Cache-Control: no-store and Vary: Cookie; the service, whose outermost()
    says so on every answer, passes False."""

    name = "session"
    api = 2

    def __init__(self, interface, keyword="session", private=True, warnings=None, metrics=None):
        self.interface = interface
        self.keyword = keyword
        self.private = private
        self.metrics = metrics
        self.warnings = Summarised(log) if warnings is None else warnings

    def setup(self, app):
        for other in app.plugins:
            if (isinstance(other, SessionPlugin) and other is not self and
                    other.keyword == self.keyword):
                raise bottle.PluginError(
                    f"another SessionPlugin already passes '{self.keyword}' to routes")

    def apply(self, callback, route):
        if self.keyword not in inspect.signature(route.callback).parameters:
            return callback  # this route does not ask for a session: no store work at all
        if inspect.isgeneratorfunction(route.callback):
            raise bottle.PluginError(f"{route.rule}: a generator route cannot take a session: "
                                     "its body runs after the answer began, too late to save")

        @functools.wraps(callback)
        def with_session(*args, **kwargs):
            session = self.open(bottle.request.environ)
            try:
                result = callback(*args, **kwargs, **{self.keyword: session})
            except bottle.HTTPResponse as raised:  # redirect() and abort() raise their answer
                self.finish(session, raised)
                raise
            answer = result if isinstance(result, bottle.HTTPResponse) else bottle.response
            self.finish(session, answer)
            return result
        return with_session

    def open(self, environ):
        with store_errors(self.warnings, self.metrics, handle=lambda: self.cookie_handle(environ)):
            session = self.interface.open_session(
                environ.get("HTTP_COOKIE"), https=is_https(environ),
                client=environ.get("HTTP_USER_AGENT"), path=request_path(environ))
        # A verified cookie, no live session.
        if self.metrics and session.is_new and session.cookie_id:
            self.metrics.ended.labels("expired").inc()
        return session

    def cookie_handle(self, environ):
        """The public handle of the session the request's cookie names, for a log line."""
        _, sid = self.interface.read_cookie(environ.get("HTTP_COOKIE"))
        return sid and self.interface.handle_of_key(self.interface.key(sid))

    def finish(self, session, answer):
        """Save the session unless the answer is an error, and put the headers on that answer."""
        for name, value in PRIVATE if self.private else ():
            answer.set_header(name, value)
        if answer.status_code >= 400:
            return
        was = (session.is_new, session.regenerated and session.cookie_id is not None,
               session.destroyed and session.cookie_id is not None and not session.is_new)
        with store_errors(self.warnings, self.metrics,
                          handle=lambda: self.interface.handle(session)):
            cookie = self.interface.save_session(session)
        if self.metrics:
            self.metrics.saved(session, *was)
        if cookie:
            answer.add_header("Set-Cookie", cookie)  # beside any the route set itself


class store_errors:
    """A with-block in which a session error becomes its HTTP answer (Bottle's HTTPError);
    an unavailable store is also a warning, through `warnings` (a Summarised)."""

    ANSWERS = [
        (sessions.StoreUnavailable, 503, "the session store is unavailable; try again shortly"),
        (sessions.SessionConflict, 409, None),
        (sessions.SessionDataError, 400, None),
        (sessions.InsecureTransport, 403, None),
    ]

    def __init__(self, warnings, metrics=None, handle=None):
        self.warnings = warnings
        self.metrics = metrics
        self.handle = handle  # the session's public handle, or a callable that gives it

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        for error_kind, status, message in self.ANSWERS if error is not None else ():
            if isinstance(error, error_kind):
                # Its type or our own words, never a host; the handle, never the id.
                if status == 503:
                    handle = self.handle() if callable(self.handle) else self.handle
                    about = f" (session {handle})" if handle else ""
                    self.warnings.warn(f"session store unavailable: {error}{about}")
                if self.metrics and status in (503, 409):
                    self.metrics.refused(error)
                raise bottle.HTTPError(status, message or str(error), **dict(PRIVATE)) from None
        return False


class Summarised:
    """A warning that may come once per request (a store outage under load): the
    first is written at once, the rest as one line per `every` seconds with how
    many there were, so the log grows with time, not with a client's request rate."""

    def __init__(self, logger, every=WARN_EVERY):
        self.logger = logger
        self.every = every
        self._lock = threading.Lock()
        self._last = -math.inf
        self._held = 0
        self._message = None

    def warn(self, message):
        with self._lock:
            since = time.monotonic() - self._last
            if since < self.every:
                self._held += 1
                self._message = message
                if self._held == 1:  # the count is written when this interval ends
                    timer = threading.Timer(self.every - since, self._write_held)
                    timer.daemon = True
                    timer.start()
                return
            self._last = time.monotonic()
        self.logger.warning("%s", message)

    def _write_held(self):
        with self._lock:
            held = self._held
            self._held = 0
            self._last = time.monotonic()
        self.logger.warning("%s (%d times in the last %d s)", self._message, held, self.every)


# --- The routes ---


def make_app(interface, login_limit=None, metrics=None):
    """The Bottle app: the seed's three routes, the teaching page and health checks.
    `login_limit`: a LoginLimit, or None for none; `metrics`: a Metrics, or None."""
    app = bottle.Bottle()
    app.default_error_handler = json_error
    app.error_handler[503] = unavailable
    warnings = Summarised(log)
    app.install(SessionPlugin(interface, private=False, warnings=warnings, metrics=metrics))

    def ended_by_owner(count):
        if metrics:
            metrics.ended.labels("ended_by_owner").inc(count)
        return count

    @app.get("/")
    def page(session):
        listed = []
        if logged_in_name(session) is not None and session.owner is not None:
            with store_errors(warnings, metrics):
                current = interface.handle(session)
                listed = [describe(info, current)
                          for info in interface.list_sessions(session.owner)]
        return teaching_page(interface, session, listed=listed)

    @app.post("/")
    def login(session):
        refuse_cross_site()
        try:
            wait = (login_limit.wait(bottle.request.environ.get("REMOTE_ADDR", ""))
                    if login_limit else 0)
            if wait:
                if metrics:
                    metrics.logins_refused.labels("rate_limit").inc()
                raise bottle.HTTPError(
                    429, f"too many logins from your address; try again in {wait} s",
                    **{"Retry-After": str(wait)})
            name = read_name(bottle.request.environ)
        except bottle.HTTPError as error:
            if not browser():
                raise
            bottle.response.status = error.status_code
            for header in ("Retry-After",):
                if header in error.headers:
                    bottle.response.set_header(header, error.headers[header])
            return teaching_page(interface, session, error=error.body)
        session.regenerate()  # a new id at login: a planted id is worth nothing (session fixation)
        session["user"] = {"name": name, "isLoggedIn": True}
        session.owner = name  # anyone may log in as any name here: "your sessions" are this name's
        if browser():
            bottle.redirect("/?done=login", 303)  # POST/redirect/GET: a reload does not post again
        return {"name": name}

    @app.post("/logout")
    def logout(session):
        refuse_cross_site()
        answer = {"loggedOut": True}
        everywhere = flag(read_fields(bottle.request.environ, optional=True), "everywhere")
        if everywhere:
            owner = requester(session)
            with store_errors(warnings, metrics):
                others = ended_by_owner(interface.end_sessions(owner, keep=session))
            answer["ended"] = others + 1  # and this one, a logout: destroyed just below
        session.destroy()
        if browser():
            bottle.redirect("/?done=everywhere" if everywhere else "/?done=logout", 303)
        return answer

    @app.get("/sessions")
    def list_sessions(session):
        owner = requester(session)
        with store_errors(warnings, metrics):
            listed = interface.list_sessions(owner)
        current = interface.handle(session)
        return {"sessions": [describe(info, current) for info in listed]}

    @app.post("/sessions/end")
    def end_sessions(session):
        refuse_cross_site()
        fields = read_fields(bottle.request.environ)
        owner = requester(session)
        handle = fields.get("handle")
        if flag(fields, "others"):
            with store_errors(warnings, metrics):
                ended = ended_by_owner(interface.end_sessions(owner, keep=session))
        elif isinstance(handle, str):
            if handle == interface.handle(session):
                session.destroy()  # ending the session making the request is a logout
                if browser():
                    bottle.redirect("/?done=logout", 303)
                ended = 1
            else:
                with store_errors(warnings, metrics):
                    found = HANDLE.fullmatch(handle) and interface.end_session(owner, handle)
                if not found:
                    # Whether it is someone else's is not said.
                    bottle.abort(404, "no such session of yours")
                ended = ended_by_owner(1)
        else:
            bottle.abort(400, 'send {"handle": "..."} or {"others": true}')
        if browser():
            bottle.redirect("/?done=ended", 303)
        return {"ended": ended}

    @app.get("/name")
    def name(session):
        name = logged_in_name(session)
        if name is None:
            bottle.abort(404, "not logged in")  # no user to read: an answer, not a server error
        return {"name": name}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        with store_errors(warnings, metrics):
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
    """The path as the browser sent it (a mounted app's prefix included): what a cookie's
    Path is matched to."""
    path = (environ.get("SCRIPT_NAME", "") +
            environ.get("bottle.raw_path", environ.get("PATH_INFO", "")))
    return path or "/"  # an empty path is the root, as Bottle routes it


def is_https(environ):
    # outermost() sets the scheme from X-Forwarded-Proto only for the proxy TRUST_PROXY names.
    return environ.get("wsgi.url_scheme") == "https"


def read_name(environ):
    """The login name from a JSON or form body; abort with 400/413/415 otherwise."""
    name = read_fields(environ).get("name")
    if not isinstance(name, str):
        bottle.abort(400, f"name must be a string of 1 to {MAX_NAME} characters")
    return check_name(name)


def read_fields(environ, optional=False):
    """A JSON object or form body as a dict ({} for no body at all if `optional`);
    abort with 400/413/415 otherwise."""
    # Refuse by the declared length before reading, and count what is read too:
    # a chunked body declares none.
    length = environ.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > MAX_BODY:
        bottle.abort(413, f"the body must be at most {MAX_BODY} bytes")
    # Media types are case-insensitive (RFC 9110 section 8.3.1).
    kind = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if (optional and not kind and length == "0" and
            "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "")):
        return {}
    if kind not in ("application/json", "application/x-www-form-urlencoded"):
        bottle.abort(415, "send application/json or application/x-www-form-urlencoded")
    body = environ["wsgi.input"].read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        bottle.abort(413, f"the body must be at most {MAX_BODY} bytes")
    if optional and not body:
        return {}
    try:
        text = body.decode("utf-8")
        if kind == "application/json":
            fields = json.loads(text)
        else:
            fields = {k: v[0] for k, v in
                      urllib.parse.parse_qs(text, keep_blank_values=True, errors="strict").items()}
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, JSON nested too deep
        bottle.abort(400, "the body is not valid " +
                     ("JSON" if kind == "application/json" else "form data"))
    if not isinstance(fields, dict):
        bottle.abort(400, "the body must be a JSON object")
    return fields


FLAGS = {True: True, False: False, "1": True, "true": True, "0": False, "false": False}


def flag(fields, name):
    """A yes/no field: JSON true or false, or a form's "1" or "0"; absent is no.  Anything
    else is a 400: a request that asks to end sessions must not be half understood."""
    value = fields.get(name, False)
    if not isinstance(value, (bool, str)) or value not in FLAGS:
        bottle.abort(400, f"{name} must be true or false")
    return FLAGS[value]


NICKNAME = precis_i18n.get_profile("NicknameCasePreserved")  # RFC 8266
WHY = {"controls": "a control character", "precis_ignorable_properties": "an invisible character",
       "zero_width_joiner": "an invisible joiner", "zero_width_nonjoiner": "an invisible joiner",
       "old_hangul_jamo": "a Hangul filler", "unassigned": "an unassigned code point"}


def check_name(name):
    """A display name by RFC 8266 (the PRECIS Nickname profile): every space becomes
    a plain one, trimmed and collapsed; compatibility forms (full-width letters,
    ligatures) become their plain form (NFKC); invisible, control, unassigned and
    private-use characters are refused, so one name cannot pass for another
    ("ad\u200bmin", "admin\u202e", a Hangul filler).  Then 1 to MAX_NAME characters."""
    try:
        name = NICKNAME.enforce(name)
    except UnicodeError as exc:
        reason = exc.reason.partition("/")[2]
        if reason == "empty":
            bottle.abort(400, f"name must be a string of 1 to {MAX_NAME} characters")
        code = ord(exc.object[exc.start])
        why = "an unpaired surrogate" if 0xD800 <= code <= 0xDFFF else WHY.get(
            reason, "a character no name may hold (private use or a noncharacter)")
        bottle.abort(400, f"name must not contain U+{code:04X}, {why} (RFC 8266 nickname rules)")
    if len(name) > MAX_NAME:
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
    site = environ.get("HTTP_SEC_FETCH_SITE")
    origin = environ.get("HTTP_ORIGIN")
    if site is not None:
        foreign = site not in ("same-origin", "none")
    else:
        # Origin is "scheme://host[:port]", scheme included; anything else, "null" too, is foreign.
        here = f"{environ.get('wsgi.url_scheme')}://{environ.get('HTTP_HOST')}"
        foreign = origin is not None and origin != here
        if foreign and origin.partition("://")[2] == environ.get("HTTP_HOST"):
            bottle.abort(403, "cross-site form posts are refused: "
                              f"the Origin is {origin.partition(':')[0]}, "
                              f"this request {here.partition(':')[0]} "
                              "(behind a TLS proxy, set TRUST_PROXY)")
    if foreign:
        bottle.abort(403, "cross-site form posts are refused")


def logged_in_name(session):
    """The logged-in user's name, or None (no user, logged out, or not ours to read)."""
    user = session.get("user")
    if not isinstance(user, dict) or user.get("isLoggedIn") is not True:
        return None
    name = user.get("name")
    return name if isinstance(name, str) else None


def requester(session):
    """Whose sessions this request may see and end: its session's owner, or abort 404."""
    if logged_in_name(session) is None or session.owner is None:
        bottle.abort(404, "not logged in")
    return session.owner


HANDLE = re.compile(r"[A-Za-z0-9_-]{20}")  # what SessionInterface.handle_of_key makes


def describe(info, current):
    """One entry of GET /sessions: never the id, nor anything it can be computed from."""
    def iso(timestamp):
        return timestamp and sessions.to_iso(timestamp)
    return {"handle": info.handle, "current": info.handle == current, "started": iso(info.started),
            "lastExtended": iso(info.last_extended), "expires": iso(info.expires),
            "absoluteExpires": iso(info.absolute_expires), "client": info.client}


class LoginLimit:
    """At most `per_minute` logins per client address: a token bucket per address,
    full at `per_minute` and refilled evenly over a minute, so a burst (an office
    behind one NAT at 9 o'clock) passes and a loop does not.  An IPv6 client counts
    by its /64, which one host is given whole.  The table forgets the least
    recently seen addresses beyond `clients`, so it cannot grow without bound."""

    def __init__(self, per_minute, clients=100_000, clock=time.monotonic):
        self.per_minute = per_minute
        self.clients = clients
        self.clock = clock
        self._buckets = OrderedDict()  # client -> (tokens, when)
        self._lock = threading.Lock()

    def wait(self, address):
        """0 if a login from `address` may go ahead (it is counted), else the whole seconds
        to wait."""
        client = self._client(address)
        with self._lock:
            now = self.clock()
            tokens, when = self._buckets.pop(client, (self.per_minute, now))
            tokens = min(self.per_minute, tokens + (now - when) * self.per_minute / 60)
            wait = 0 if tokens >= 1 else math.ceil((1 - tokens) * 60 / self.per_minute)
            self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > self.clients:
                self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def _client(address):
        return client_of(address)


def client_of(address):
    """Who a client address stands for: an IPv4 address (an IPv4-mapped one included), or the
    /64 of an IPv6 address, which one host is given whole."""
    if ":" not in address:
        return address  # IPv4, or not an address at all: as it is
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


# --- The teaching page ---

PAGE = bottle.SimpleTemplate("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sessions, seen from the server</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem;
       color: #222 }
.panel { background: #f5f5f2; border: 1px solid #ddd; border-radius: 6px; padding: 0 1rem 1rem;
         margin-top: 2rem }
code, pre { font: 14px ui-monospace, monospace }
pre { white-space: pre-wrap; overflow-wrap: break-word }
.error { color: #a00 } .done { background: #eef6ee; padding: .5rem 1rem; border-radius: 6px }
dt { font-weight: 600 } dd { margin: 0 0 .6rem } .actions form, li form { display: inline }
table { border-collapse: collapse } td { padding: .1rem .8rem .1rem 0; vertical-align: top }
</style></head><body><h1>Sessions, seen from the server</h1>
% if error:
<p class="error" role="alert">{{error}}</p>
% end
% if done:
<p class="done" role="status">{{done}}</p>
% end
% if name:
<p>Signed in as <strong>{{name}}</strong>.</p>
<div class="actions"><form method="post" action="/logout"><button>Log out</button></form>
<form method="post" action="/logout"><input type="hidden" name="everywhere" value="1">
<button>Log out everywhere</button></form></div>
% else:
<form method="post" action="/"><label>Your name
<input name="name" maxlength="100" required autofocus></label>
<button>Sign in</button></form>
% end
% if listed:
<section class="panel"><h2>Your sessions</h2>
<p>Every browser signed in under the name {{name}}. Anyone may sign in under any name in this demo,
so these are the sessions under this name; a real application lists a real user's.</p><ul>
%   for entry in listed:
<li>{{entry["client"] or "an unknown client"}},
signed in {{entry["started"] or "at an unknown time"}}
%     if entry["current"]:
(this browser)
%     end
<form method="post" action="/sessions/end"><input type="hidden" name="handle"
 value="{{entry['handle']}}"><button>End</button></form></li>
%   end
</ul>
%   if len(listed) > 1:
<form method="post" action="/sessions/end"><input type="hidden" name="others" value="1">
<button>End all other sessions</button></form>
%   end
</section>
% end
<section class="panel"><h2>What the server sees</h2>
% if raw is None:
<p>Your browser sent no session cookie. Nothing is stored for a visitor who has not signed in,
so there is no cookie to send: a bot that never signs in costs the store nothing.</p>
% else:
<p>Cookie <code>{{cookie_name}}</code>, as your browser sent it (URL-decoded; on the wire
<code>s:</code> is <code>s%3A</code>), in three parts:</p>
<dl>
%   if raw.startswith("s:"):
<dt><code>s:</code></dt><dd>this value is signed by the server (express-session's marker)</dd>
<dt>id <code>{{sid[:6]}}&hellip;</code></dt><dd>a random name (192 bits) for the document the server
stores; no more than its first 6 characters are shown, because a script that read the page could
replay a whole id, which would undo HttpOnly</dd>
<dt>signature <code>{{signature[:6]}}&hellip;</code></dt><dd>HMAC-SHA256 of the id under the
server's secret: proof that this server issued the id. The server recomputes it and compares the
two in constant time: the signature {{"verified" if verified else "did not verify"}}.</dd>
%   else:
<dt><code>{{raw[:6]}}&hellip;</code></dt><dd>no <code>s:</code> prefix, so not a signed id:
ignored</dd>
%   end
</dl>
%   if not verified:
<p><strong>No session:</strong> this server did not issue this cookie, or it was changed on the way
(one changed character changes the signature). Without the secret nobody can make a signature that
verifies, so the cookie is ignored without even asking the store.</p>
%   elif session.is_new:
<p><strong>No session:</strong> the signature is right, but this cookie names no live session: the
store holds no document under its id any more (you logged out, it expired, or it was ended from
another browser). An id alone is worth nothing; only the stored document makes it a session.</p>
%   else:
<h3>The stored document</h3>
<p>One document per session, as connect-mongo stores it; <code>session</code> is one JSON string,
shown here laid out. A Node.js service reading it would see the same data.</p>
<pre>{ _id: "{{session.id[:6]}}&hellip;",
  expires: ISODate("{{expires}}"),
  owner: {{repr(session.owner) if session.owner else "(none)"}},
  session: '{{stored}}',
  createdAt: &hellip;, lastModified: &hellip;, client: &hellip; }</pre>
<p><code>owner</code>, <code>createdAt</code>, <code>lastModified</code> and <code>client</code>
(the browser that signed in) are what "Your sessions" lists; connect-mongo leaves them alone.</p>
<h3>When it ends</h3>
<table>
<tr><td>signed in</td><td>{{started}}</td></tr>
<tr><td>now</td><td>{{now}}</td></tr>
<tr><td>idle deadline</td><td>{{expires}}: in {{idle}}, unless used</td></tr>
<tr><td>absolute deadline</td><td>{{absolute}}</td></tr>
</table>
<p>The idle deadline is {{max_age}} after the session was last <em>extended</em>. Extending costs
a store write, so a request that changes nothing extends it at most once every {{touch_after}}:
unused, the session ends between {{shortest}} and {{max_age}} after your last request. However
busy, it ends at the absolute deadline.</p>
<p>This page's request {{this_request}}</p>
%   end
% end
<p>JavaScript on this page cannot read the session cookie: it is <code>HttpOnly</code>. It is
<code>SameSite={{samesite}}</code>: other sites' forms and fetches do not carry it.</p></section>
</body></html>""")

OUTAGE = bottle.SimpleTemplate("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The session store is unavailable</title>
</head><body>
<h1>The session store is unavailable</h1>
<p>To show this page the server must read your session from its store, and the store did not answer
in time. Rather than answer as if you had no session (you would look signed out, and a sign-in could
not be stored), the server answers <strong>503 Service Unavailable</strong>: nothing was changed.
Try again shortly; it recovers by itself once the store answers.</p>
<p>For operators: <code>/readyz</code> says 503 too, so a load balancer takes this instance out;
<code>/healthz</code> stays 200, so nothing restarts a process that is fine.</p></body></html>""")

# No scripts, no framing (clickjacking), forms post only here; inline style is the page's own.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "frame-ancestors 'none'; form-action 'self'; "
                                           "base-uri 'none'",
                "Referrer-Policy": "same-origin"}

DONE = {  # what the form post just before this page did, as its redirect says (?done=...)
    "login": "You signed in: whatever session your browser had was deleted, a new document "
             "was stored under a fresh random id, and your browser got a new cookie. A new id "
             "at every sign-in makes an id someone planted before worth nothing.",
    "logout": "You logged out: the document was deleted and your browser was told to forget "
              "the cookie.",
    "everywhere": "Every session under your name ended, this one included: their documents "
                  "were deleted, and your browser was told to forget its cookie.",
    "ended": "That session ended: its document was deleted, so that browser's cookie now "
             "names nothing.",
}


def duration(seconds):
    minutes = int(max(0, seconds)) // 60
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def teaching_page(interface, session, error=None, listed=()):
    """The visitor's own session, as the server sees it; the template escapes everything."""
    for header, value in PAGE_HEADERS.items():
        bottle.response.set_header(header, value)
    raw, verified = interface.read_cookie(bottle.request.environ.get("HTTP_COOKIE"))
    sid, _, signature = raw[2:].rpartition(".") if raw else ("", "", "")
    opts = interface.options
    now = interface.clock()
    max_age = opts.max_age if session.max_age is None else session.max_age
    shown = {}
    if not session.is_new:
        data = json.loads(session.stored)
        shown = dict(
            stored=json.dumps(data, indent=2, ensure_ascii=False),
            expires=sessions.to_iso(session.expires), idle=duration(session.expires - now),
            started=(sessions.to_iso(session.started) if session.started
                     else "unknown (another service started it)"),
            absolute=(f"{sessions.to_iso(session.absolute_expires)}: in "
                      f"{duration(session.absolute_expires - now)}, however active"
                      if session.absolute_expires else "unknown (another service started it)"),
            this_request=("read the document and extended its idle deadline (a touch): the "
                          "server writes the new expiry and sends the cookie again."
                          if interface.touch_due(session, now) else
                          "read the document and wrote nothing: its last extension is recent "
                          "enough."))
    done = DONE.get(bottle.request.query.get("done")) if not error else None
    return PAGE.render(name=logged_in_name(session), error=error, done=done,
                       cookie_name=opts.cookie_name, raw=raw, sid=sid, signature=signature,
                       verified=verified is not None, session=session, listed=listed,
                       now=sessions.to_iso(now), max_age=duration(max_age),
                       touch_after=duration(opts.touch_after),
                       shortest=duration(max_age - opts.touch_after),
                       samesite=sessions.SAMESITE[opts.cookie_samesite], **shown)


def unavailable(error):
    """A 503: the outage page for a browser asking for the page, JSON for everyone else."""
    if bottle.request.path == "/" and bottle.request.method == "GET" and browser():
        for header, value in PAGE_HEADERS.items():
            bottle.response.set_header(header, value)
        bottle.response.content_type = "text/html; charset=utf-8"
        return OUTAGE.render()
    return json_error(error)


# --- Configuration ---


class ConfigError(ValueError):
    """Raised if an environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    mongo_url: str | None
    collection: str
    trust_proxy: str | None  # None, "*" (any peer) or the proxy's IP: whose X-Forwarded-* count
    threads: int  # waitress worker threads
    connection_limit: int  # open connections waitress accepts before it stops accepting
    connections_per_client: int  # open connections one client address may hold
    request_timeout: int  # seconds from a request's first byte to its last
    login_rate_limit: int  # logins per minute per client address; 0: no limit
    admin_port: int | None  # the management listener's port; None: none
    access_log: bool
    max_sessions: int | None  # cap of the embedded store; None: no cap
    random_secret: bool  # no SESSION_SECRET was given
    options: sessions.Options


# Which variable sets which sessions.Options field, to name it in errors.
ENV_OF_OPTION = {"secrets": "SESSION_SECRET", "cookie_name": "SESSION_COOKIE_NAME",
                 "max_age": "SESSION_MAX_AGE", "absolute_timeout": "SESSION_ABSOLUTE_TIMEOUT",
                 "touch_after": "SESSION_TOUCH_AFTER", "cookie_samesite": "SESSION_SAMESITE",
                 "cookie_secure": "COOKIE_SECURE",
                 "browser_session_cookie": "SESSION_BROWSER_COOKIE",
                 "id_at_rest": "SESSION_ID_AT_REST"}


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
            cookie_secure=choice("COOKIE_SECURE", "auto",
                                 {"auto": "auto", "true": True, "false": False}),
            cookie_samesite=choice("SESSION_SAMESITE", "lax", {k: k for k in sessions.SAMESITE}),
            browser_session_cookie=choice("SESSION_BROWSER_COOKIE", "0", {"1": True, "0": False}),
            id_at_rest=choice("SESSION_ID_AT_REST", "plain",
                              {"plain": "plain", "sha256": "sha256"}))
    except sessions.OptionError as exc:
        raise ConfigError(f"{ENV_OF_OPTION.get(exc.option, exc.option)}: {exc}") from None
    collection = get("SESSION_COLLECTION", "sessions")
    bad_name = "$" in collection or "\0" in collection or "" in collection.split(".")
    if bad_name or collection.startswith("system."):
        raise ConfigError("SESSION_COLLECTION must be a MongoDB collection name "
                          f"(no '$', not system.*), got {collection!r}")
    trust = get("TRUST_PROXY", "0")
    if trust not in ("0", "1"):
        try:
            trust = str(ipaddress.ip_address(trust))
        except ValueError:
            raise ConfigError(f"TRUST_PROXY must be 0, 1 (any peer) or the proxy's IP address, "
                              f"got {trust!r}") from None
    return Settings(host=get("HOST", "127.0.0.1"), port=whole("PORT", 4000, 0, 65535),
                    mongo_url=get("MONGO_URL"), collection=collection,
                    trust_proxy={"0": None, "1": "*"}.get(trust, trust),
                    threads=whole("THREADS", 8, 1, 256),
                    connection_limit=whole("CONNECTION_LIMIT", 1000, 1, 100_000),
                    connections_per_client=whole("CONNECTIONS_PER_CLIENT", 100, 1, 100_000),
                    request_timeout=whole("REQUEST_TIMEOUT", 10, 1, 3600),
                    login_rate_limit=whole("LOGIN_RATE_LIMIT", 60, 0, 1_000_000),
                    admin_port=whole("ADMIN_PORT", 0, 0, 65535) if get("ADMIN_PORT") else None,
                    access_log=choice("ACCESS_LOG", "1", {"1": True, "0": False}),
                    max_sessions=whole("SESSION_MEMORY_MAX_SESSIONS", 200_000, 0, 10**9) or None,
                    random_secret=secret is None, options=options)


# --- The store ---

# w=majority unless MONGO_URL says otherwise: an acknowledged login survives a
# replica-set failover.  timeoutMS bounds a whole store operation, server
# selection and retries included, so an outage is a 503 within it, not a hung
# request.  The URL's own timeoutMS wins; else the smallest of the URL's
# per-step timeouts becomes it (alone, each bounds one step: a read retried
# after a socket timeout takes twice as long, a reselection up to 30 s).
MONGO_DEFAULTS = {"w": "majority", "timeoutMS": 5000}
STEP_TIMEOUTS = ("connecttimeoutms", "serverselectiontimeoutms", "sockettimeoutms",
                 "waitqueuetimeoutms")


def mongo_options(url_options):
    """What the service adds to MONGO_URL's options (given with lower-case names, as pymongo
    parses them)."""
    added = {k: v for k, v in MONGO_DEFAULTS.items() if k.lower() not in url_options}
    # In seconds, as parse_uri gives them; 0 (pymongo's "no limit") bounds nothing.
    steps = [url_options[k] for k in STEP_TIMEOUTS if url_options.get(k)]
    if "timeoutMS" in added and steps:
        added["timeoutMS"] = int(min(steps) * 1000)
    return added


def open_mongo_collection(url, name):
    try:
        given = {key.lower(): value for key, value in parse_uri(url)["options"].items()}
    except (PyMongoError, ValueError) as exc:
        raise ConfigError(f"MONGO_URL is not a usable MongoDB URL: {exc}") from None
    # A 2xx says the session is stored: w=0 acknowledges nothing, and on a replica set
    # w=1 loses what a failover takes with the old primary.
    if given.get("w") == 0 or (given.get("w") == 1 and "replicaset" in given):
        raise ConfigError(f"MONGO_URL: w={given['w']} cannot keep the promise that an answered "
                          "login is stored; leave w out (the service uses w=majority) "
                          "or set w=majority")
    if given.get("timeoutms") == 0:  # pymongo's "no limit": a hung store would hold them all
        raise ConfigError("MONGO_URL: timeoutMS=0 leaves store calls unbounded; leave it out "
                          "(the service uses 5000) or give a number of milliseconds")
    try:
        client = pymongo.MongoClient(url, **mongo_options(given))
    except (PyMongoError, ValueError) as exc:
        raise ConfigError(f"MONGO_URL is not a usable MongoDB URL: {exc}") from None
    return client.get_default_database(default="sessions")[name]


class Unavailable(sessions.StoreUnavailable):
    """StoreUnavailable with its cause, for the metrics: breaker_open, queue_timeout or
    slot_timeout."""

    def __init__(self, message, cause):
        super().__init__(message)
        self.cause = cause


# When the request being served arrived (time.monotonic()), for GuardedStore: set by outermost().
REQUEST_ARRIVED = contextvars.ContextVar("request_arrived", default=None)


STORE_OPERATIONS = ("load", "insert", "compare_and_set", "touch", "delete", "owned", "delete_owned",
                    "purge", "ping")  # sessions.Store's methods


class GuardedStore:
    """A MongoStore that a slow MongoDB does not turn into errors, nor a hung one into a hung
    service.

    - At most `slots` calls wait on the store at once (THREADS - 1), so one thread
      always serves what needs no store.
    - Each request has `timeout` seconds (the store's own operation timeout) from
      its arrival: one that already waited that long in waitress's queue is a 503
      without a store call, and one waits for a slot only for what is left.  Under
      overload the oldest are shed first: answered later, they would come after the
      store's own timeout, when their client has likely given up.  A store that
      answers, however slowly, is never taken for a failed one.
    - After a connection failure or a timeout (a circuit breaker, open) calls fail
      at once, but for one probe every `retry_after` seconds, within what is left of
      its request's time; its success closes it.  Latency alone never opens it."""

    def __init__(self, store, slots, timeout, retry_after=1.0, clock=time.monotonic, metrics=None):
        self.store = store
        self.timeout = timeout
        self.retry_after = retry_after
        self.clock = clock
        # Each operation's latency histogram, found once (prometheus_client's labels()).
        self._timers = {} if metrics is None else {
            name: metrics.store_seconds.labels(name) for name in STORE_OPERATIONS}
        self._slots = threading.BoundedSemaphore(slots)  # raises on a release without an acquire
        self._lock = threading.Lock()
        self.down = False
        self._probing = False
        self._probe_at = 0.0

    # The store contract (sessions.Store), every call through _call.

    def load(self, key, now):
        return self._call(self.store.load, key, now)

    def insert(self, key, record, replacing=None):
        return self._call(self.store.insert, key, record, replacing=replacing)

    def compare_and_set(self, key, previous, record, now):
        return self._call(self.store.compare_and_set, key, previous, record, now)

    def touch(self, key, expires, now):
        return self._call(self.store.touch, key, expires, now)

    def delete(self, key):
        return self._call(self.store.delete, key)

    def owned(self, owner, now):
        return self._call(self.store.owned, owner, now)

    def delete_owned(self, owner, now, keep=None):
        return self._call(self.store.delete_owned, owner, now, keep=keep)

    def purge(self, now):
        return self._call(self.store.purge, now)

    def ping(self):
        return self._call(self.store.ping)

    def _call(self, method, *args, **kwargs):
        probe = False
        if self.down:  # open: one caller at a time may probe, under the lock
            with self._lock:
                probe = self.down and not self._probing and self.clock() >= self._probe_at
                if self.down and not probe:
                    raise Unavailable("the store failed; a probe tries it again shortly",
                                      "breaker_open")
                self._probing = self._probing or probe
        try:
            arrived = REQUEST_ARRIVED.get()
            deadline = (time.monotonic() if arrived is None else arrived) + self.timeout
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable("the request waited longer than the store's timeout",
                                  "queue_timeout")
            if not self._slots.acquire(timeout=left):
                raise Unavailable("no store slot came free within the store's timeout",
                                  "slot_timeout")
            started = self.clock()
            try:
                if self.down and not probe:  # it opened while this call waited for its slot
                    raise Unavailable("the store failed; a probe tries it again shortly",
                                      "breaker_open")
                if probe:
                    # The probe may fall to a request that already waited: it gets what is
                    # left of that request's time.  (Other calls run only while the breaker
                    # is closed; cut short, a slow store's late answer would be a timeout,
                    # which opens the breaker.)
                    with pymongo.timeout(max(deadline - time.monotonic(), 0.001)):
                        result = method(*args, **kwargs)
                else:
                    result = method(*args, **kwargs)
            except sessions.StoreUnavailable as exc:
                cause = exc.__cause__  # MongoStore keeps the driver's error here
                if isinstance(cause, ConnectionFailure) or getattr(cause, "timeout", False):
                    self._probe_at = self.clock() + self.retry_after
                    self.down = True
                raise
            finally:
                self._slots.release()
                if self._timers:
                    self._timers[method.__name__].observe(self.clock() - started)
        finally:
            if probe:
                self._probing = False
        self.down = False
        return result


def open_store(settings, ensure_indexes=True, metrics=None):
    """The store, and its name for the startup line.  Raises ConfigError for a bad MONGO_URL,
    StoreUnavailable if MongoDB cannot make its indexes."""
    if not settings.mongo_url:
        return sessions.MemoryStore(max_sessions=settings.max_sessions), "embedded in-memory"
    collection = open_mongo_collection(settings.mongo_url, settings.collection)
    mongo = sessions.MongoStore(collection, driver_error=PyMongoError,
                                ensure_indexes=ensure_indexes)
    timeout = collection.database.client.options.timeout or MONGO_DEFAULTS["timeoutMS"] / 1000
    return (GuardedStore(mongo, slots=max(1, settings.threads - 1), timeout=timeout,
                         metrics=metrics), "mongodb")


def readiness(store):
    """None if the store answers a ping now, else why not; never waits behind session requests
    (no store slot) nor longer than READY_TIMEOUT."""
    guarded = store if isinstance(store, GuardedStore) else None
    try:
        with pymongo.timeout(READY_TIMEOUT):
            (guarded.store if guarded else store).ping()
    except sessions.StoreUnavailable as exc:
        return f"the session store is unavailable ({exc})"
    if guarded:
        # The store answers: close the breaker.  An instance taken out of service sees no session
        # request that could probe it, so readiness must be that probe.
        guarded.down = False
    return None


# --- What an operator sees: metrics, and the management port ---


class Metrics:
    """Counts an operator watches, in Prometheus's text format (prometheus_client),
    served on the management port.  One registry per app, so tests build as many as
    they like.  Names follow Prometheus's conventions: _total counters, _seconds."""

    def __init__(self, store=None):
        self.registry = registry = prometheus_client.CollectorRegistry(auto_describe=True)

        def counter(name, text, *labels):
            return prometheus_client.Counter(name, text, labels, registry=registry)
        self.created = counter("sessions_created_total",
                               "Sessions stored for the first time (logins).")
        self.regenerated = counter("sessions_regenerated_total",
                                   "Logins that replaced the session the request arrived with.")
        self.ended = counter("sessions_ended_total", "Sessions ended: logout, expired "
                             "(seen on a read), conflict, ended_by_owner.", "reason")
        self.logins_refused = counter("logins_refused_total", "Logins refused: rate_limit.",
                                      "reason")
        self.unavailable = counter("store_unavailable_responses_total",
                                   "503 answers: breaker_open, queue_timeout, slot_timeout, "
                                   "store_error.", "cause")
        self.store_seconds = prometheus_client.Histogram(
            "store_call_duration_seconds", "Session store calls, by operation.", ["operation"],
            registry=registry)
        self.request_seconds = prometheus_client.Histogram(
            "http_request_duration_seconds", "Requests, by route.", ["route"], registry=registry)
        if store is not None:
            registry.register(StoreReadings(store))

    def saved(self, session, was_new, replaced, logged_out):
        """Count what a save did: a new session stored (a login replacing one: regenerated),
        a logout."""
        if logged_out:
            self.ended.labels("logout").inc()
        elif was_new and not session.is_new:
            self.created.inc()
            if replaced:
                self.regenerated.inc()

    def refused(self, error):
        if isinstance(error, sessions.SessionConflict):
            self.ended.labels("conflict").inc()
        else:
            self.unavailable.labels(getattr(error, "cause", "store_error")).inc()


class StoreReadings:
    """Metrics read off the store when scraped: the breaker's state, the memory store's size."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        if isinstance(self.store, GuardedStore):
            yield GaugeMetricFamily("store_breaker_open", "1 while the circuit breaker is open.",
                                    value=int(self.store.down))
        if isinstance(self.store, sessions.MemoryStore):
            yield GaugeMetricFamily("memory_store_sessions",
                                    "Live sessions in the in-memory store.", value=len(self.store))
            yield CounterMetricFamily("memory_store_evicted",
                                      "Sessions ended early to make room at the cap.",
                                      value=self.store.evicted)


def management_app(store, metrics):
    """The management port's app: GET /healthz, /readyz and /metrics, nothing about
    sessions but counts.  Served by its own waitress threads (serve()), so a probe
    never waits behind session requests."""
    def app(environ, start_response):
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO", "")

        def answer(status, body, kind="application/json", extra=()):
            headers = [("Content-Type", kind), ("Content-Length", str(len(body))), *extra]
            start_response(status, headers)
            return [b"" if method == "HEAD" else body]
        if path not in ("/healthz", "/readyz", "/metrics"):
            return answer("404 Not Found",
                          b'{"error": "not found: /healthz, /readyz and /metrics are here"}')
        if method not in ("GET", "HEAD"):
            return answer("405 Method Not Allowed", b'{"error": "only GET and HEAD"}',
                          extra=[("Allow", "GET, HEAD")])
        if path == "/healthz":
            return answer("200 OK", b'{"status": "ok"}')
        if path == "/readyz":
            problem = readiness(store)
            if problem:
                return answer("503 Service Unavailable", json.dumps({"error": problem}).encode())
            return answer("200 OK", b'{"status": "ready"}')
        return answer("200 OK", prometheus_client.generate_latest(metrics.registry),
                      prometheus_client.CONTENT_TYPE_LATEST)
    return app


# --- Serving ---

EVERY_RESPONSE = [("X-Content-Type-Options", "nosniff"), *PRIVATE]  # unless the answer set its own
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~-]*")  # what quote(safe="/") leaves as it is
FORWARDED = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST",
             "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_BY", "HTTP_FORWARDED")


def outermost(app, access_log=None, trust_proxy=None, clock=time.time, metrics=None):
    """What every request and answer goes through, whatever answers it (Bottle, a route, an error).

    In: X-Forwarded-Proto and -For count only from the proxy `trust_proxy` names
    (see forwarded()); a path that is not UTF-8 is a 400.  Out: nosniff (a
    browser never guesses a JSON body is HTML) and PRIVATE (most answers depend
    on the cookie; the rest are errors and health checks, which no cache should
    keep either), and, if `access_log` (anything with write()) is given, one
    line: time, method, path, status, milliseconds.  Never the query string, a
    cookie or a header: they can carry secrets.  With `metrics`, its time by route."""
    def handle(environ, start_response):
        started = clock()
        status = "-"
        path = environ.get("PATH_INFO", "")
        REQUEST_ARRIVED.set(environ.get("service.arrived"))  # for GuardedStore: see harden()

        def start(line, headers, exc_info=None):
            nonlocal status
            status = line[:3]
            present = {name.lower() for name, _ in headers}
            headers += [(name, value) for name, value in EVERY_RESPONSE
                        if name.lower() not in present]
            return start_response(line, headers, exc_info)

        def refuse(message):
            start("400 Bad Request", [("Content-Type", "application/json")])
            return [json.dumps({"error": message}).encode()]
        try:
            problem = forwarded(environ, trust_proxy)
            if problem:
                return refuse(problem)
            # WSGI gives the path's bytes as latin-1; Bottle would drop bytes that are not UTF-8.
            try:
                path.encode("latin-1").decode("utf-8")
            except UnicodeError:
                return refuse("the path is not valid UTF-8")
            return app(environ, start)
        finally:
            if metrics:
                # A route's rule: a label with few values, never a path.
                route = environ.get("bottle.route")
                label = route.rule if route else "unmatched"
                metrics.request_seconds.labels(label).observe(clock() - started)
            if access_log:
                now = clock()
                # As the client sent it (PEP 3333: bytes as latin-1), escaped: no raw control
                # characters.
                sent = path
                if not _PLAIN_PATH.fullmatch(path):
                    sent = urllib.parse.quote(path.encode("latin-1", "replace"), safe="/")
                sent = sent if len(sent) <= 200 else sent[:200] + "..."  # a line, not a flood
                method = str(environ.get("REQUEST_METHOD"))[:20]
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
                access_log.write(f"{when},{int(now * 1000) % 1000:03d} INFO "
                                 f"{method} {sent} {status} "
                                 f"{(now - started) * 1000:.1f}ms\n")
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


def harden(listeners, trust_proxy, connections_per_client):
    """What waitress does not do by itself.  It has no API for these, so this one
    function swaps in its parser, error task and channel classes:
    - RFC 9112 section 6.3: a request with both Content-Length and Transfer-Encoding,
      whatever its HTTP version, may be a smuggling attempt: a 400, connection closed;
    - each request records when its first byte came, for close_late_requests() and,
      as environ["service.arrived"], for GuardedStore's timeout;
    - a client address with `connections_per_client` connections open gets a 429 at
      once, so one client cannot take every connection (the trusted proxy speaks for
      many clients and is not capped: it caps them itself);
    - waitress's own errors (a malformed request, a body over its cap) are JSON too."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser, ParsingError
    from waitress.task import ErrorTask, WSGITask

    class StrictParser(HTTPRequestParser):
        def __init__(self, adj):
            super().__init__(adj)
            self.started = time.monotonic()

        def parse_header(self, header_plus):
            super().parse_header(header_plus)
            # HTTP/1.1 takes Transfer-Encoding out of the headers (self.chunked); 1.0 leaves it
            # there.
            if "CONTENT_LENGTH" in self.headers and (self.chunked or
                                                     "TRANSFER_ENCODING" in self.headers):
                raise ParsingError("Content-Length and Transfer-Encoding in one request")

    class JSONErrorTask(ErrorTask):
        def execute(self):
            error = self.request.error
            body = json.dumps({"error": f"{error.reason}: {error.body}"}).encode()
            self.status = f"{error.code} {error.reason}"
            self.response_headers += [("Content-Type", "application/json"), *EVERY_RESPONSE]
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class StampedTask(WSGITask):
        def get_environment(self):
            environ = super().get_environment()
            environ["service.arrived"] = self.request.started
            return environ

    class GuardedChannel(HTTPChannel):
        parser_class = StrictParser
        error_task_class = JSONErrorTask
        task_class = StampedTask

        def __init__(self, server, sock, addr, adj, map=None):
            super().__init__(server, sock, addr, adj, map)
            if trust_proxy is None or (trust_proxy != "*" and addr[0] != trust_proxy):
                client = client_of(addr[0])  # an IPv6 host's whole /64 is one client
                same = sum(1 for ch in self._map.values()
                           if isinstance(ch, HTTPChannel) and client_of(ch.addr[0]) == client)
                if same > connections_per_client:
                    answer_and_close(self, "429 Too Many Requests",
                                     "too many connections from your address")

    for listener in listeners:
        listener.channel_class = GuardedChannel


def answer_and_close(channel, status, message):
    """Answer a waitress channel from its event loop (no request is running on it) and close it."""
    body = json.dumps({"error": message}).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    head += ("".join(f"{name}: {value}\r\n" for name, value in EVERY_RESPONSE) +
             "Connection: close\r\n\r\n")
    channel.write_soon(head.encode() + body)
    channel.close_when_flushed = True


def close_late_requests(channels, timeout):
    """A request not whole `timeout` seconds after its first byte is answered 408 and its
    connection closed (Node's requestTimeout, nginx's client_header_timeout): a client
    that sends a byte now and then cannot hold a connection for ever.  Idle time
    between requests is not counted here: waitress's channel_timeout ends that."""
    now = time.monotonic()
    for channel in list(channels.values()):
        request = getattr(channel, "request", None)
        late = request is not None and now - getattr(request, "started", now) > timeout
        if late and not channel.requests and not channel.close_when_flushed and channel.connected:
            answer_and_close(channel, "408 Request Timeout",
                             f"the request did not arrive within {timeout} s")


def drain(listeners, channels, wait_for=DRAIN_FOR, quiet_for=1.0):
    """Stop accepting and let what was accepted finish (at most `wait_for` seconds).
    waitress has no drain API (Pylons/waitress#372), so this one function uses its
    internals: the listeners' accept, the channels' fields."""
    from waitress import wasyncore
    from waitress.channel import HTTPChannel
    for listener in listeners:
        count = -1
        # A connection the kernel queued but nobody accepted would be reset.
        while len(channels) != count:
            count = len(channels)
            listener.handle_accept()
        # The socket only: BaseWSGIServer.close() also ends the wake-up.
        wasyncore.dispatcher.close(listener)

    # A request partly received, queued, running, or not yet sent; or a connection just used.
    def busy(ch):
        return (ch.request or ch.requests or ch.total_outbufs_len or
                time.time() - ch.last_activity < quiet_for)
    deadline = time.monotonic() + wait_for
    while time.monotonic() < deadline and any(busy(ch) for ch in list(channels.values())
                                              if isinstance(ch, HTTPChannel)):
        wasyncore.loop(timeout=0.05, map=channels, count=1, use_poll=True)


def serve(app, settings, store_kind, stopping, management=None):
    """Serve with waitress until `stopping` is set (SIGINT/SIGTERM), then stop
    accepting, let in-flight requests finish (at most DRAIN_FOR seconds) and return.
    `management`: the management port's app, served by threads of its own."""
    from waitress import wasyncore
    from waitress.server import BaseWSGIServer, create_server

    # waitress's socket maps: listeners and connections
    channels = {}
    admin_channels = {}
    port = settings.port
    try:
        server = create_server(
            app, map=channels, host=settings.host, port=settings.port, threads=settings.threads,
            connection_limit=settings.connection_limit, channel_timeout=IDLE_TIMEOUT,
            # No "Server: waitress" (OWASP: naming the server software points to its known flaws).
            ident="",
            asyncore_use_poll=True,  # poll(), not select(): no 1024-descriptor ceiling
            clear_untrusted_proxy_headers=False,  # outermost() does it, and reads the trusted ones
            # waitress holds a whole body before the app reads it: no more than the app reads (and
            # room for chunk headers), so a large unfinished body costs neither memory nor a file.
            max_request_body_size=MAX_BODY + 1024)
        if management is not None:
            port = settings.admin_port
            admin = create_server(management, map=admin_channels, host=settings.host, port=port,
                                  threads=2, ident="", asyncore_use_poll=True,
                                  channel_timeout=IDLE_TIMEOUT, clear_untrusted_proxy_headers=False,
                                  max_request_body_size=1024)
    except (OSError, ValueError) as exc:  # port in use, no such address
        log.error("cannot listen on %s:%s: %s", settings.host, port, exc)
        wasyncore.close_all(channels)
        return False
    listeners = [ch for ch in channels.values() if isinstance(ch, BaseWSGIServer)]
    harden(listeners, settings.trust_proxy, settings.connections_per_client)
    for listener in listeners:
        log.info("listening on %s (store: %s)", url_of(listener), store_kind)
    if management is not None:
        admin_listeners = [ch for ch in admin_channels.values() if isinstance(ch, BaseWSGIServer)]
        harden(admin_listeners, None, ADMIN_PER_CLIENT)
        for listener in admin_listeners:
            log.info("management port %s: /healthz, /readyz, /metrics", url_of(listener))
        admin_loop = (admin_channels, stopping, settings.request_timeout)
        threading.Thread(target=event_loop, args=admin_loop, daemon=True, name="management").start()
    event_loop(channels, stopping, settings.request_timeout)

    log.info("stopping: finishing requests in flight")
    drain(listeners, channels)
    server.task_dispatcher.shutdown(timeout=1)
    wasyncore.close_all(channels)
    if management is not None:
        admin.task_dispatcher.shutdown(timeout=1)
        wasyncore.close_all(admin_channels)
    return True


def event_loop(channels, stopping, request_timeout):
    """waitress's event loop over `channels` until `stopping` is set, cutting off late requests."""
    from waitress import wasyncore
    checked = 0.0
    while not stopping.is_set():
        wasyncore.loop(timeout=0.5, map=channels, count=1, use_poll=True)
        if time.monotonic() - checked >= 0.5:
            checked = time.monotonic()
            close_late_requests(channels, request_timeout)


def url_of(listener):
    host = listener.effective_host
    return (f"http://[{host}]:{listener.effective_port}" if ":" in host
            else f"http://{host}:{listener.effective_port}")


def warn_about(settings):
    """Settings that work but leave a door open: said once, at startup, never echoing a secret."""
    secrets_ = settings.options.secrets
    if settings.random_secret:
        log.warning("SESSION_SECRET is not set: signing with a random secret; "
                    "sessions end when the process stops")
    for position, secret in enumerate(secrets_ if not settings.random_secret else (), start=1):
        # Every secret verifies: a weak one anywhere in the list lets a forged cookie in.
        if len(secret) < 32:
            log.warning("SESSION_SECRET: secret %d of %d is shorter than 32 characters: "
                        "guessable offline from one cookie; make one with: "
                        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
                        position, len(secrets_))
    if settings.options.id_at_rest == "sha256":
        log.info("SESSION_ID_AT_REST=sha256: the store keeps SHA-256 digests of session ids; "
                 "sessions stored under plain ids before no longer load (their users log in "
                 "again)")
    if settings.mongo_url and settings.threads == 1:
        log.warning("THREADS=1 with MONGO_URL: no thread is kept free of the store, so while "
                    "MongoDB hangs every request waits, /healthz too; use THREADS=2 or more")


def main(env=os.environ):
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    # Our own startup and access lines suffice.
    logging.getLogger("waitress").setLevel(logging.WARNING)
    # waitress's "Task queue depth is N" is one line per request that waits for a thread:
    # when busiest.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # Set by SIGINT/SIGTERM, from the first moment on: exit 0, no traceback.
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        settings = settings_from_env(env)
    except ConfigError as exc:
        print(f"service.py: {exc}", file=sys.stderr)
        return 2
    warn_about(settings)
    if not settings.mongo_url:
        log.warning("no MONGO_URL: sessions are kept in memory and lost when the process stops")
    else:
        log.info("ensuring the TTL index on '%s.expires' and the owner index", settings.collection)
    try:
        metrics = Metrics()
        store, kind = open_store(settings, metrics=metrics)
    except ConfigError as exc:
        print(f"service.py: {exc}", file=sys.stderr)
        return 2
    except sessions.StoreUnavailable as exc:
        if stopping.is_set():
            return 0
        log.error("could not ensure the indexes: MongoDB did not answer (%s)", exc)
        return 1
    metrics.registry.register(StoreReadings(store))
    interface = sessions.SessionInterface(store, settings.options)
    login_limit = LoginLimit(settings.login_rate_limit) if settings.login_rate_limit else None
    app = outermost(make_app(interface, login_limit, metrics),
                    sys.stderr if settings.access_log else None, settings.trust_proxy,
                    metrics=metrics)
    management = None if settings.admin_port is None else outermost(management_app(store, metrics))
    return 0 if stopping.is_set() or serve(app, settings, kind, stopping, management) else 1


if __name__ == "__main__":
    sys.exit(main())
