"""Server-side sessions: a signed id in a cookie, the data in MongoDB.

How it works
------------
The browser holds only an id, never the data.  The cookie value is the
express-session format, so a Node.js service can share the same sessions::

    s:<id>.<signature>      signature = base64(HMAC-SHA256(secret, id)), no '=' padding

URL-encoded when it is sent (``s%3A...``).  Signing proves the server issued
the id; it hides nothing and does not stop a stolen cookie from being replayed
(that is what HttpOnly, Secure, SameSite and short lifetimes are for).

The store keeps one document per session, connect-mongo's default shape::

    {_id: <id>, expires: <BSON date>, session: '<JSON: data + "cookie" object>'}

Two lifetimes end a session: the idle timeout (``max_age``: unused this long,
it is gone) and the absolute timeout (counted from the session's creation,
however active it is).  ``expires`` is the earlier of the two; every read asks
for ``expires > now`` and MongoDB's TTL index deletes what has passed.

Two stores keep one contract (load, insert, compare_and_set, touch, delete,
purge, ping): MongoStore over any pymongo-compatible collection, and
MemoryStore, one process's memory, as express-session ships MemoryStore
beside its Store interface.  Standard library only.
"""

import base64
import email.utils
import functools
import heapq
import hmac
import json
import marshal
import math
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

try:  # OpenSSL's CSPRNG keeps the GIL; os.urandom, under secrets.token_bytes, releases it (see sign)
    from ssl import RAND_bytes as _random_bytes
except ImportError:  # a Python built without OpenSSL
    from os import urandom as _random_bytes

# --- Errors ---


class SessionError(Exception):
    """Root of the errors this module raises."""


class SessionDataError(SessionError, ValueError):
    """Raised if session data cannot be stored: not JSON, too large, or a reserved key."""


class OptionError(SessionError, ValueError):
    """Raised if an option has a value sessions cannot work with; `option` names it."""

    def __init__(self, option, message):
        super().__init__(f"{option} {message}")
        self.option = option


class SessionConflict(SessionError):
    """Raised if a change could not be saved because concurrent requests kept
    changing the session, or ended it, while this request ran."""


class StoreUnavailable(SessionError):
    """Raised if the store cannot answer now; the request may be tried again later (HTTP 503)."""


class StoreFull(StoreUnavailable):
    """Raised if MemoryStore holds max_sessions live sessions and a new one would not fit."""


# --- Options ---

# RFC 6265 section 4.1.1: a cookie name is an HTTP token.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
RESERVED_KEYS = ("cookie", "absoluteExpires")  # written by this module, not by callers


@dataclass(frozen=True)
class Options:
    """Every session setting, checked once here.  Durations are in seconds."""

    secrets: tuple  # the first signs, every one verifies (rotation)
    cookie_name: str = "example.sid"
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_secure: object = "auto"  # True, False, or "auto": Secure when the request came over HTTPS
    max_age: float = 7 * 3600  # seconds idle before the session is gone
    absolute_timeout: float = 24 * 3600  # seconds after creation, however active
    touch_after: float | None = None  # seconds between expiry-only writes; None: max_age / 10
    save_uninitialized: bool = False  # store sessions nobody put data in (express's default is true)
    resave: bool = False  # rewrite unchanged sessions on every request
    rolling: bool = False  # resend the cookie (with the stored expiry, unlike express) on every response
    max_size: int = 64 * 1024  # bytes of session JSON

    def __post_init__(self):
        def fail(name, rule, value):
            raise OptionError(name, f"must be {rule}, got {value!r}")

        def number(value, low, high):  # bool is an int in Python; not here
            return not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value < high

        keys = (self.secrets,) if isinstance(self.secrets, str) else self.secrets
        if not keys or not all(isinstance(s, str) and s for s in keys):
            raise OptionError("secrets", "must be a non-empty list of non-empty strings")  # never echo a secret
        object.__setattr__(self, "secrets", tuple(keys))
        if not isinstance(self.cookie_name, str) or not _TOKEN.match(self.cookie_name):
            fail("cookie_name", "an RFC 6265 token (letters, digits, !#$%&'*+-.^_`|~)", self.cookie_name)
        if not isinstance(self.cookie_path, str) or not re.fullmatch(r"/[\x20-\x3a\x3c-\x7e]*", self.cookie_path):
            fail("cookie_path", "a path starting with '/', printable ASCII without ';' (RFC 6265)", self.cookie_path)
        if self.cookie_domain is not None and not re.fullmatch(r"[A-Za-z0-9.-]+", self.cookie_domain):
            fail("cookie_domain", "a host name or None", self.cookie_domain)
        if not (self.cookie_secure is True or self.cookie_secure is False or self.cookie_secure == "auto"):  # not 1, 0
            fail("cookie_secure", "True, False or 'auto'", self.cookie_secure)
        # RFC 6265bis cookie prefixes: a browser drops a __Host- cookie that is not Secure, Path=/ and host-only.
        prefix = self.cookie_name.lower()  # browsers match the prefixes case-insensitively
        if prefix.startswith(("__host-", "__secure-")) and self.cookie_secure is not True or (
                prefix.startswith("__host-") and (self.cookie_path != "/" or self.cookie_domain)):
            fail("cookie_name", "used with cookie_secure=True (and for __Host-: cookie_path '/', no cookie_domain)",
                 self.cookie_name)
        for name in ("max_age", "absolute_timeout"):
            if not number(getattr(self, name), 1e-3, 1e9):
                fail(name, "a positive number of seconds", getattr(self, name))
        if self.touch_after is None:
            object.__setattr__(self, "touch_after", self.max_age / 10)
        if not number(self.touch_after, 0, self.max_age):
            fail("touch_after", f"a number of seconds from 0 to less than max_age ({self.max_age})", self.touch_after)
        for name in ("save_uninitialized", "resave", "rolling"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False", getattr(self, name))
        if not number(self.max_size, 256, 2**31) or not isinstance(self.max_size, int):
            fail("max_size", "a whole number of bytes, at least 256", self.max_size)


# --- Signing (the cookie-signature package's format) ---


@functools.lru_cache(maxsize=16)  # a few secrets (rotation): kept keyed, at most 16, as long as the process runs
def _keyed(secret):
    return hmac.new(secret.encode(), digestmod="sha256")


def sign(value, secret):
    """Return 'value.signature' (HMAC-SHA256, base64 without '=' padding)."""
    # A copy of an HMAC already fed the key skips the key setup, a quarter of the cost (hmac's docs suggest
    # copy() for a shared prefix).  Not hmac.digest: it releases the GIL, and among waitress's threads
    # getting it back costs; update() on a short message keeps it.
    mac = _keyed(secret).copy()
    mac.update(value.encode())
    return value + "." + base64.b64encode(mac.digest()).decode().rstrip("=")


def unsign(signed, keys):
    """Return the value if any of the secrets in `keys` signed it, else None."""
    value, dot, _ = signed.rpartition(".")
    if not dot:
        return None
    for secret in keys:
        # Recompute and compare in constant time: no timing hint about the right signature.
        if hmac.compare_digest(sign(value, secret).encode(), signed.encode()):
            return value
    return None


def new_id():
    """A fresh session id: 24 random bytes, 192 bits, 32 URL-safe characters."""
    return base64.urlsafe_b64encode(_random_bytes(24)).decode()


# --- Cookie parsing and formatting ---


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_cookie_header(header):
    """Parse a Cookie header as Node's `cookie` module (0.7) does: split on ';',
    trim spaces and tabs, the first occurrence of a name wins, values are
    URL-decoded when they can be.  A malformed pair is skipped, never fatal,
    so it cannot hide its neighbours."""
    cookies = {}
    for pair in (header or "").split(";"):
        name, eq, value = pair.partition("=")
        name, value = name.strip(" \t"), value.strip(" \t")
        if not eq or not name or name in cookies:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if "%" in value and not _BAD_ESCAPE.search(value):
            try:
                value = urllib.parse.unquote(value, errors="strict")
            except UnicodeDecodeError:
                pass  # like decodeURIComponent failing: keep the raw value
        cookies[name] = value
    return cookies


@functools.lru_cache(maxsize=64)  # logins in the same second share their Expires date
def _http_date(second):
    return email.utils.formatdate(second, usegmt=True)  # English names whatever the locale


_URI_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone, as express-session does
_URI_UNSAFE = re.compile(r"[^A-Za-z0-9\-_.!~*'()]")


def _encode_uri_component(value):
    """JavaScript's encodeURIComponent (the signed value is ASCII: three escapes, not a byte-by-byte quote)."""
    if value.isascii():
        return _URI_UNSAFE.sub(lambda found: f"%{ord(found.group()):02X}", value)
    return urllib.parse.quote(value, safe=_URI_SAFE)


def format_set_cookie(name, value, *, max_age, expires, path="/", domain=None, secure=False):
    """Build a Set-Cookie header value.  HttpOnly: page scripts cannot read the id.
    SameSite=Lax: other sites' forms and fetches do not carry it (CSRF)."""
    parts = [f"{name}={_encode_uri_component(value)}"]
    if domain:
        parts.append(f"Domain={domain}")
    # Max-Age rounds up (from the milliseconds stored): the cookie may outlive the session by under a second, never
    # the reverse, so in its last second a session is not lost while still valid.
    max_age = max(0, math.ceil(round(max_age, 3)))
    parts += [f"Path={path}", f"Expires={_http_date(int(expires))}", f"Max-Age={max_age}", "HttpOnly"]
    if secure:
        parts.append("Secure")  # never sent over plain HTTP
    parts.append("SameSite=Lax")
    return "; ".join(parts)


# --- Time: epoch seconds inside, naive-UTC datetimes in the store ---


_EPOCH = datetime(1970, 1, 1)


def to_datetime(timestamp):
    """Epoch seconds -> naive UTC datetime, cut to the milliseconds BSON keeps."""
    return _EPOCH + timedelta(milliseconds=int(timestamp * 1000))


def to_timestamp(value):
    """A stored date (naive means UTC, as pymongo returns it) -> epoch seconds."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return (value - _EPOCH).total_seconds()


def to_iso(timestamp):
    """JavaScript's Date.toISOString(): 2026-11-28T15:10:00.000Z."""
    millis = int(timestamp * 1000)  # cut to the milliseconds, as to_datetime does
    return "%s.%03dZ" % (_iso_second(millis // 1000), millis % 1000)


@functools.lru_cache(maxsize=64)  # writes in the same second share it: a quarter of to_iso's cost
def _iso_second(second):
    return (_EPOCH + timedelta(seconds=second)).isoformat()


def from_iso(text):
    """An ISO date as JavaScript writes it -> epoch seconds; None if it is not one (another writer's data)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError, AttributeError):
        return None


# --- The session ---


_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # made once: json.dumps makes one per call


def _to_json(data):
    """Compact JSON text, or SessionDataError: never store what will not load back."""
    try:
        return _JSON.encode(data)
    except (TypeError, ValueError) as exc:
        raise SessionDataError(f"session data must be JSON (str, number, bool, None, list, dict): {exc}") from None


def _as_json(data):
    """data as it will be stored and loaded back (tuples become lists)."""
    return json.loads(_to_json(data))


def _copy(value):
    """A deep copy of JSON data (a few times faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return [_copy(v) for v in value] if isinstance(value, list) else value


def _marshal(data):
    """data as marshal bytes (format 2: no back-references, so equal data gives equal bytes), or None
    if marshal cannot write it (say a datetime).  Only ever read back in this process: marshal is
    not for bytes from elsewhere."""
    try:
        return marshal.dumps(dict(data), 2)
    except ValueError:
        return None


def _same(a, b):
    """Deep equality that tells 1, 1.0 and True apart, as JSON does."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return type(b) is list and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


class Session(dict):
    """One visitor's data: a dict that knows whether it changed.  Change is
    found by comparing with a deep copy taken at load (express-session hashes
    a serialised snapshot to the same end), so nested edits
    (session["cart"].append(...)) count too."""

    # Every request builds one: named slots instead of a dict per object make that 40% cheaper.
    __slots__ = ("_id", "is_new", "cookie_id", "expires", "absolute_expires", "stored", "retired", "destroyed",
                 "touched", "_snapshot", "_marshalled")

    def __init__(self, sid, data=(), *, is_new, expires=None, absolute_expires=None, stored=None, cookie_id=None,
                 snapshot=None, marshalled=None):
        self.update(data)  # not super().__init__: a fifth of building one (measured)
        self._id = sid  # None: a new session's own, drawn when first asked for
        self.is_new = is_new
        self.cookie_id = cookie_id  # the stored id the request arrived with (express-session's name), or None
        self.expires = expires  # epoch seconds, as stored
        self.absolute_expires = absolute_expires  # epoch seconds, or None if unknown
        self.stored = stored  # the stored 'session' JSON string, for compare-and-set
        self.retired = False  # regenerate() or destroy(): delete cookie_id at save
        self.destroyed = False
        self.touched = False
        self._snapshot = {key: _copy(value) for key, value in self.items()} if snapshot is None else snapshot
        self._marshalled = marshalled  # the snapshot as _marshal bytes, if known

    @property
    def id(self):
        # Drawn when first needed: a request without a cookie that stores nothing (a 404) draws none.
        if self._id is None:
            self._id = new_id()
        return self._id

    @id.setter
    def id(self, sid):
        self._id = sid

    @property
    def modified(self):
        # The same marshal bytes are the same data, 1, 1.0 and True told apart: one C call, a
        # few times faster than comparing.  Other bytes may still be equal data (keys reordered).
        if self._marshalled is not None and _marshal(self) == self._marshalled:
            return False
        return not _same(self, self._snapshot)

    def _saved(self, snapshot):
        """What was just stored becomes what later changes are found against."""
        self._snapshot, self._marshalled = snapshot, None

    def regenerate(self):
        """Start afresh under a new id; the id the request arrived with is deleted at save.
        OWASP: renew the id when privilege changes (login), against fixation."""
        self.clear()
        self._id, self.is_new, self.stored, self.retired = None, True, None, True  # a new id when asked
        self.expires = self.absolute_expires = None

    def destroy(self):
        """End the session: delete it from the store and expire the cookie."""
        self.clear()
        self.destroyed = self.retired = True

    def touch(self):
        """Extend the idle expiry at save even if the touch interval has not passed."""
        self.touched = True


# --- The stores: one contract, times in epoch seconds ---


class MongoStore:
    """Session documents in any pymongo-compatible collection."""

    def __init__(self, collection):
        self.collection = collection

    def ensure_indexes(self):
        # MongoDB deletes a document once its 'expires' date passes (about once a minute).
        self.collection.create_index([("expires", 1)], expireAfterSeconds=0)

    def load(self, sid, now):
        """(the stored 'session' field, expires) of the live document, or None.
        Filtering on expires does not trust the TTL sweep: an expired session is never served."""
        doc = self.collection.find_one({"_id": sid, "expires": {"$gt": to_datetime(now)}})
        return None if doc is None else (doc.get("session"), to_timestamp(doc["expires"]))

    def insert(self, sid, stored, expires):
        self.collection.insert_one({"_id": sid, "expires": to_datetime(expires), "session": stored})

    def compare_and_set(self, sid, previous, stored, expires, now):
        """Write only if the session is live and nobody changed it since we read
        `previous`; never creates a document (a logout stays a logout)."""
        found = {"_id": sid, "session": previous, "expires": {"$gt": to_datetime(now)}}
        update = {"$set": {"session": stored, "expires": to_datetime(expires)}}
        return self.collection.update_one(found, update).matched_count == 1

    def touch(self, sid, expires, now):
        found = {"_id": sid, "expires": {"$gt": to_datetime(now)}}
        return self.collection.update_one(found, {"$set": {"expires": to_datetime(expires)}}).matched_count == 1

    def delete(self, sid):
        self.collection.delete_one({"_id": sid})

    def purge(self, now):
        """Delete expired documents, for collections without a TTL monitor."""
        return self.collection.delete_many({"expires": {"$lte": to_datetime(now)}}).deleted_count

    def ping(self):
        self.collection.database.command("ping")


class MemoryStore:
    """Sessions in this process's memory, lost when it stops: for one process
    (a prototype, a test), never for several instances behind a proxy.

    id -> (stored JSON, expires).  Expiry is indexed by the whole second it
    falls in (a heap of seconds, a list of ids per second), so purging visits
    only what expired; a touch leaves its old entry behind, skipped when that
    second is purged.  Reads take no lock (one dict lookup is atomic); writes
    take one lock, never for more than PURGE_CHUNK ids of expiry work."""

    PURGE_CHUNK = 1000  # ids per lock hold, about a millisecond
    PURGE_PER_INSERT = 16  # expiry work each login does, so expired sessions never pile up

    def __init__(self, max_sessions=None, clock=time.time):
        self.max_sessions, self.clock = max_sessions, clock  # None: no cap
        self._sessions = {}
        self._due = {}  # second -> ids that expired in it, maybe stale
        self._seconds = []  # heap of _due's keys
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._sessions)

    def load(self, sid, now):
        entry = self._sessions.get(sid)
        return entry if entry is not None and entry[1] > now else None

    def insert(self, sid, stored, expires):
        with self._lock:
            now = self.clock()
            self._purge(now, self.PURGE_PER_INSERT)
            if self.max_sessions and len(self._sessions) >= self.max_sessions:
                self._purge(now, self.PURGE_CHUNK, exact=True)
                if len(self._sessions) >= self.max_sessions:
                    # A cap, so a flood of logins cannot exhaust the memory.
                    raise StoreFull(f"the in-memory store holds its maximum of {self.max_sessions} sessions")
            self._put(sid, stored, expires)

    def compare_and_set(self, sid, previous, stored, expires, now):
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None or entry[1] <= now or entry[0] != previous:
                return False
            self._put(sid, stored, expires, entry[1])
            return True

    def touch(self, sid, expires, now):
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None or entry[1] <= now:
                return False
            self._put(sid, entry[0], expires, entry[1])
            return True

    def delete(self, sid):
        with self._lock:
            self._sessions.pop(sid, None)  # its entry in _due is skipped when that second is purged

    def purge(self, now):
        total, more = 0, True
        while more:
            with self._lock:  # released between chunks: requests go on while a big purge runs
                deleted, more = self._purge(now, self.PURGE_CHUNK, exact=True)
            total += deleted
        return total

    def ping(self):
        pass

    def _put(self, sid, stored, expires, old_expires=None):
        expires = math.floor(expires * 1000) / 1000  # milliseconds, as BSON keeps them
        self._sessions[sid] = (stored, expires)
        second = int(expires)
        if old_expires is not None and int(old_expires) == second:
            return  # already listed under this second
        if second not in self._due:
            self._due[second] = []
            heapq.heappush(self._seconds, second)
        self._due[second].append(sid)

    def _expired(self, sid, now):
        entry = self._sessions.get(sid)
        if entry is not None and entry[1] <= now:  # else live: touched to later, or not due yet
            del self._sessions[sid]
            return True
        return False

    def _purge(self, now, budget, exact=False):
        """Delete up to `budget` expired sessions from the seconds wholly past, and
        if `exact`, from the second `now` is in; return (deleted, whether more may be due)."""
        deleted = 0
        while self._seconds and self._seconds[0] + 1 <= now:
            ids = self._due[self._seconds[0]]
            while ids:
                if budget == 0:
                    return deleted, True
                budget -= 1
                deleted += self._expired(ids.pop(), now)
            del self._due[heapq.heappop(self._seconds)]
        ids = self._due.get(int(now)) if exact else None
        if ids:  # a second's worth of ids: what is still live stays listed
            live = [sid for sid in ids if not self._expired(sid, now)]
            deleted += len(ids) - len(live)
            ids[:] = live
        return deleted, False


# --- The request lifecycle ---

MERGE_ATTEMPTS = 10  # each round one writer wins, so this many concurrent writers always finish
_MISSING = object()


def _load_data(stored):
    """The stored JSON as a dict, or None if it is not one (another writer, a corrupt store)."""
    try:
        data = json.loads(stored)
    except (TypeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _remember(cache, key, value, most, longest):
    """Keep value under a text key of at most `longest` characters; when `most` are kept, forget them all."""
    if type(key) is str and len(key) <= longest:
        if len(cache) >= most:
            cache.clear()
        cache[key] = value


class SessionInterface:
    """Opens a session from a Cookie header and saves it after the response
    is built: the two halves of a request (Flask's SessionInterface)."""

    VERIFIED_MAX = 10_000  # Cookie headers remembered as verified; all forgotten when full
    VERIFIED_KEY_MAX = 512  # characters: a longer header is checked every time (the cache stays under ~10 MB)
    PARSED_MAX, PARSED_KEY_MAX = 1000, 1024  # stored JSON texts remembered parsed (at most ~25 MB), as above

    def __init__(self, store, options, clock=time.time):
        self.store, self.options, self.clock = store, options, clock
        # Parsing and the HMAC are most of a read's own work: remember the Cookie headers
        # that verified, and only those (a forged one is checked every time, and costs no memory).
        self._verified = {}
        self._parsed = {}  # stored JSON -> (data, absolute deadline): read only, each session gets a copy

    def read_cookie(self, cookie_header):
        """The session cookie's value as sent, URL-decoded (or None), and the id
        in it if it has express's "s:" prefix and one of our secrets signed it (or None)."""
        name = self.options.cookie_name
        if not cookie_header or name not in cookie_header:
            return None, None
        known = self._verified.get(cookie_header)
        if known is not None:
            return known
        raw = parse_cookie_header(cookie_header).get(name)
        sid = unsign(raw[2:], self.options.secrets) if raw and raw.startswith("s:") else None
        if sid is not None:
            _remember(self._verified, cookie_header, (raw, sid), self.VERIFIED_MAX, self.VERIFIED_KEY_MAX)
        return raw, sid

    def open_session(self, cookie_header):
        """Return the request's session, or a new empty one.  This is the one
        place where a bad cookie becomes "no session": missing, unsigned,
        wrongly signed, unknown, expired and unreadable all start afresh."""
        now = self.clock()
        _, sid = self.read_cookie(cookie_header)
        found = self.store.load(sid, now) if sid else None  # no valid cookie, no store work
        if found is None:
            return Session(None, is_new=True)
        stored, expires = found
        parsed = self._parsed.get(stored) if type(stored) is str else None  # another writer's may be anything
        if parsed is None:
            parsed = self._parse(stored)
        if parsed is None:
            # Unreadable: start afresh, but a login or logout still deletes the document this verified cookie names.
            return Session(None, is_new=True, cookie_id=sid)
        data, marshalled, absolute = parsed
        if absolute is not None and absolute <= now:
            # OWASP: the absolute timeout ends the session, whoever extended 'expires' (say connect-mongo's touch).
            return Session(None, is_new=True, cookie_id=sid)
        copy = marshal.loads(marshalled) if marshalled else _copy(data)  # marshal: one C call
        return Session(sid, copy, is_new=False, expires=expires, absolute_expires=absolute, stored=stored,
                       cookie_id=sid, snapshot=data, marshalled=marshalled)

    def _parse(self, stored):
        """(data, its _marshal bytes, absolute deadline or None if another service wrote it) of a stored
        JSON text, None if unreadable."""
        data = _load_data(stored)
        if data is None:
            return None
        data.pop("cookie", None)
        absolute = from_iso(data.pop("absoluteExpires", None))
        parsed = data, _marshal(data), absolute
        _remember(self._parsed, stored, parsed, self.PARSED_MAX, self.PARSED_KEY_MAX)
        return parsed

    def save_session(self, session, https=False):
        """Write what changed and return the Set-Cookie value, or None.
        Raises SessionDataError, SessionConflict, StoreUnavailable, and whatever the store raises."""
        now, opts = self.clock(), self.options
        secure = https if opts.cookie_secure == "auto" else opts.cookie_secure
        if session.destroyed:
            if session.cookie_id:
                self.store.delete(session.cookie_id)
            # Clear with the same Path/Domain it was set with, or the browser keeps it.
            return format_set_cookie(opts.cookie_name, "", max_age=0, expires=0, path=opts.cookie_path,
                                     domain=opts.cookie_domain, secure=secure)
        send = self._write(session, now, secure)
        if session.retired:
            if session.cookie_id:
                self.store.delete(session.cookie_id)  # after the new one is stored: a failure leaves a valid session
            session.cookie_id, session.retired = (None if session.is_new else session.id), False
        if not send:
            return None
        signed = "s:" + sign(session.id, opts.secrets[0])  # the first secret signs
        return format_set_cookie(opts.cookie_name, signed, max_age=session.expires - now, expires=session.expires,
                                 path=opts.cookie_path, domain=opts.cookie_domain, secure=secure)

    def _write(self, session, now, secure):
        """Store what changed; return whether the client needs a new cookie."""
        opts = self.options
        if session.is_new:
            if not session and not opts.save_uninitialized:
                return False  # empty: do not let cookieless bots fill the store
            session.absolute_expires = now + opts.absolute_timeout
            session.expires = min(now + opts.max_age, session.absolute_expires)
            session.stored = self._serialise(session, secure)
            self.store.insert(session.id, session.stored, session.expires)
            session.is_new = False
            session._saved(_copy(dict(session)))  # a second save here writes nothing
            return True
        if session.modified or opts.resave:
            self._replace(session, now, secure)
            return True
        expires = self._extended_expiry(session, now)
        if session.touched or expires - session.expires >= opts.touch_after:
            # Lazy touch: at most one expiry-only write per touch interval, not one per request.
            if not self.store.touch(session.id, expires, now):
                return False  # ended meanwhile (logout, expiry): nothing to extend
            session.expires = expires
            return True
        return opts.rolling

    def _extended_expiry(self, session, now):
        deadline = session.absolute_expires or float("inf")
        return min(now + self.options.max_age, deadline)  # the absolute timeout always wins

    def _replace(self, session, now, secure):
        """Save a changed session without losing a concurrent request's change:
        compare-and-set on the stored JSON; on a clash re-read, apply our own
        changes (top-level keys, found once against the load) to their
        version, and try again (bounded)."""
        base, ours = session._snapshot, _as_json(session)
        changed = {key for key in set(base) | set(ours) if not _same(base.get(key, _MISSING), ours.get(key, _MISSING))}
        if session.absolute_expires is None:
            session.absolute_expires = now + self.options.absolute_timeout
        for _ in range(MERGE_ATTEMPTS):
            session.expires = self._extended_expiry(session, now)
            stored = self._serialise(session, secure)
            if self.store.compare_and_set(session.id, session.stored, stored, session.expires, now):
                session.stored = stored
                session._saved(_as_json(session))
                return
            found = self.store.load(session.id, now)
            theirs = _load_data(found[0]) if found else None
            if theirs is None:  # gone (logout, expiry) or made unreadable
                raise SessionConflict("the session ended while this request was changing it")
            session.clear()
            session.update({k: v for k, v in theirs.items() if k not in changed and k not in RESERVED_KEYS})
            session.update({k: ours[k] for k in changed if k in ours})
            session.stored = found[0]
        raise SessionConflict(f"the session kept changing under this request ({MERGE_ATTEMPTS} attempts)")

    def _serialise(self, session, secure):
        """The stored JSON: the data plus the cookie object express-session writes."""
        clash = [key for key in RESERVED_KEYS if key in session]
        if clash:
            raise SessionDataError(f"session keys {clash} are reserved; use other names")
        opts = self.options
        cookie = {"originalMaxAge": int(opts.max_age * 1000),  # milliseconds, by express's definition
                  "expires": to_iso(session.expires), "secure": bool(secure), "httpOnly": True}
        if opts.cookie_domain:
            cookie["domain"] = opts.cookie_domain
        cookie.update(path=opts.cookie_path, sameSite="lax")
        stored = _to_json({"cookie": cookie, **session, "absoluteExpires": to_iso(session.absolute_expires)})
        if len(stored.encode()) > opts.max_size:
            raise SessionDataError(f"session data is {len(stored.encode())} bytes, over the {opts.max_size}-byte cap")
        return stored
