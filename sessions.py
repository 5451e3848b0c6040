"""Server-side sessions: a signed id in a cookie, the data in a store.

How it works
------------
The browser holds only an id, never the data.  The cookie value is
express-session's format, so a Node.js service can share the same sessions::

    s:<id>.<signature>      signature = base64(HMAC-SHA256(secret, id)), no '=' padding

URL-encoded on the wire (``s%3A...``).  Signing proves this server issued the
id; it hides nothing and does not stop a stolen cookie from being replayed
(that is what HttpOnly, Secure, SameSite and short lifetimes are for).

The store keeps one document per session, connect-mongo's shape, plus four
fields connect-mongo ignores and keeps::

    {_id: <id>, expires: <date>, session: '<JSON: the data + express-session's "cookie" object>',
     owner: <who it belongs to>, createdAt: <date>, lastModified: <date>, client: <User-Agent>}

Two lifetimes end a session: the idle timeout (``max_age``: not extended for
this long, it is gone) and the absolute timeout (counted from its start,
however active).  ``expires`` is the earlier of the two; every read asks for
``expires > now``, and MongoDB's TTL index deletes what has passed.

Sections, bottom up: errors, options, signing, cookies, time, the session,
the store contract and its two stores, the request lifecycle.  Standard
library only.
"""

import base64
import email.utils
import hashlib
import heapq
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import NamedTuple, Protocol

log = logging.getLogger("sessions")

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


class InsecureTransport(SessionError):
    """Raised if a new session would be stored over plain HTTP while its cookie
    must be Secure: the browser would never send it back."""


class StoreUnavailable(SessionError):
    """Raised if the store cannot answer now; the request may be tried again later (HTTP 503)."""


# --- Options ---

# RFC 6265 section 4.1.1: a cookie name is an HTTP token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
RESERVED_KEYS = ("cookie", "absoluteExpires")  # written by this module, not by callers
SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
DEFAULT_MAX_AGE = 7 * 3600  # seconds


@dataclass(frozen=True)
class Options:
    """Every session setting, checked once here.  Durations are in seconds.
    Each comment names the express-session (or connect-mongo) option it matches."""

    secrets: tuple  # secret: the first signs, every one verifies (rotation)
    cookie_name: str = "example.sid"  # name (express's default is "connect.sid")
    cookie_path: str = "/"  # cookie.path
    cookie_domain: str | None = None  # cookie.domain
    cookie_secure: object = "auto"  # cookie.secure: True, False, or "auto" (Secure over HTTPS)
    cookie_samesite: str = "lax"  # cookie.sameSite: "lax", "strict" or "none" (needs Secure)
    browser_session_cookie: bool = False  # cookie.maxAge = null: no Expires, gone with the browser
    max_age: float = DEFAULT_MAX_AGE  # cookie.maxAge (milliseconds there): the idle timeout
    absolute_timeout: float = 24 * 3600  # from the start, however active (no express option)
    touch_after: float | None = None  # connect-mongo's touchAfter; None: max_age / 10
    save_uninitialized: bool = False  # saveUninitialized (express's default is true)
    resave: bool = False  # resave
    rolling: bool = False  # rolling, but it re-sends the stored expiry (see save_session)
    max_size: int = 64 * 1024  # bytes of stored JSON (no express option)
    id_at_rest: str = "plain"  # "sha256": the store keys a digest (connect-mongo's transformId)

    def __post_init__(self):
        def fail(name, rule):
            raise OptionError(name, f"must be {rule}, got {getattr(self, name)!r}")

        def number(name, low, high):  # bool is an int in Python; not here
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return ok and low <= value < high

        keys = (self.secrets,) if isinstance(self.secrets, str) else self.secrets
        if not keys or not all(isinstance(secret, str) and secret for secret in keys):
            # Never echo a secret in an error.
            raise OptionError("secrets", "must be a non-empty list of non-empty strings")
        object.__setattr__(self, "secrets", tuple(keys))
        if not isinstance(self.cookie_name, str) or not _TOKEN.fullmatch(self.cookie_name):
            fail("cookie_name", "an RFC 6265 token (letters, digits, !#$%&'*+-.^_`|~)")
        path_ok = isinstance(self.cookie_path, str)
        if not path_ok or not re.fullmatch(r"/[\x20-\x3a\x3c-\x7e]*", self.cookie_path):
            fail("cookie_path", "a path starting with '/', printable ASCII without ';' (RFC 6265)")
        domain = self.cookie_domain
        if domain is not None and not (isinstance(domain, str) and
                                       re.fullmatch(r"[A-Za-z0-9.-]+", domain)):
            fail("cookie_domain", "a host name or None")
        if not (self.cookie_secure is True or self.cookie_secure is False or
                self.cookie_secure == "auto"):
            fail("cookie_secure", "True, False or 'auto'")  # not 1 or 0
        if self.cookie_samesite not in SAMESITE:
            fail("cookie_samesite", "'lax', 'strict' or 'none'")
        if self.cookie_samesite == "none" and self.cookie_secure is not True:
            # Browsers drop a SameSite=None cookie that is not Secure.
            fail("cookie_samesite", "'none' only with cookie_secure=True")
        # RFC 6265bis prefixes: browsers drop a __Host- cookie unless Secure, Path=/ and host-only.
        prefix = self.cookie_name.lower()  # browsers match the prefixes case-insensitively
        insecure = prefix.startswith(("__host-", "__secure-")) and self.cookie_secure is not True
        not_host_only = prefix.startswith("__host-") and (self.cookie_path != "/" or
                                                          self.cookie_domain)
        if insecure or not_host_only:
            fail("cookie_name", "used with cookie_secure=True "
                                "(and for __Host-: cookie_path '/', no cookie_domain)")
        for name in ("max_age", "absolute_timeout"):
            if not number(name, 1e-3, 1e9):
                fail(name, "a positive number of seconds")
        if self.touch_after is None:
            object.__setattr__(self, "touch_after", self.max_age / 10)
        if not number("touch_after", 0, self.max_age):
            fail("touch_after", f"a number of seconds from 0 to less than max_age ({self.max_age})")
        for name in ("browser_session_cookie", "save_uninitialized", "resave", "rolling"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False")
        if not number("max_size", 256, 2**31) or not isinstance(self.max_size, int):
            fail("max_size", "a whole number of bytes, at least 256")
        if self.id_at_rest not in ("plain", "sha256"):
            fail("id_at_rest", "'plain' or 'sha256'")


# --- Signing (the cookie-signature package's format) ---


class Signer:
    """Signs with the first secret, verifies with every one.  Each secret's
    HMAC is keyed once, here, as starlette builds its signer in __init__."""

    def __init__(self, keys):
        self._keyed = [hmac.new(key.encode(), digestmod=hashlib.sha256) for key in keys]

    def sign(self, value):
        """'value.signature': HMAC-SHA256, base64 without '=' padding."""
        return value + "." + _signature(self._keyed[0], value)

    def unsign(self, signed):
        """The value if one of the secrets signed it, else None."""
        value, dot, signature = signed.rpartition(".")
        if not dot:
            return None
        for keyed in self._keyed:
            # Recompute and compare in constant time: no timing hint about the right signature.
            if hmac.compare_digest(_signature(keyed, value).encode(), signature.encode()):
                return value
        return None


def _signature(keyed, value):
    mac = keyed.copy()  # a copy of the keyed HMAC: the key itself is never set up again
    mac.update(value.encode())
    return base64.b64encode(mac.digest()).decode().rstrip("=")


def sign(value, secret):
    """'value.signature' under one secret (cookie-signature's sign)."""
    return Signer([secret]).sign(value)


def unsign(signed, keys):
    """The value if one of the secrets in `keys` signed it, else None
    (cookie-signature's unsign)."""
    return Signer(keys).unsign(signed)


def new_id():
    """A fresh session id: 24 random bytes (192 bits), 32 URL-safe characters."""
    return secrets.token_urlsafe(24)


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
        name = name.strip(" \t")
        value = value.strip(" \t")
        if not eq or not name or name in cookies:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if "%" in value and not _BAD_ESCAPE.search(value):
            try:
                value = urllib.parse.unquote_to_bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                pass  # like decodeURIComponent failing: keep the raw value
        cookies[name] = value
    return cookies


def format_set_cookie(name, value, *, max_age, expires, path="/", domain=None, secure=False,
                      samesite="lax"):
    """A Set-Cookie header value.  max_age and expires (epoch seconds) None:
    a browser-session cookie, with neither Expires nor Max-Age."""
    # encodeURIComponent, as express-session writes the value.
    parts = [f"{name}={urllib.parse.quote(value, safe=_URI_SAFE)}"]
    if domain:
        parts.append(f"Domain={domain}")
    parts.append(f"Path={path}")
    if max_age is not None:
        # Max-Age rounds up: the cookie may outlive the session by under a second, never the
        # reverse, so in its last second a session is not lost while still valid.
        max_age = max(0, math.ceil(round(max_age, 3)))
        expires = email.utils.formatdate(int(expires), usegmt=True)  # English, whatever the locale
        parts += [f"Expires={expires}", f"Max-Age={max_age}"]
    parts.append("HttpOnly")  # page scripts cannot read the id
    if secure:
        parts.append("Secure")  # never sent over plain HTTP
    parts.append(f"SameSite={SAMESITE[samesite]}")  # what other sites' requests may carry it
    return "; ".join(parts)


_URI_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone


def path_matches(request_path, cookie_path):
    """RFC 6265 section 5.1.4: does a browser send a cookie with this Path on this request?"""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/")


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
    return to_datetime(timestamp).isoformat(timespec="milliseconds") + "Z"


def from_iso(text):
    """An ISO date as JavaScript writes it -> epoch seconds; None if it is not one."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError, AttributeError):
        return None


# --- The session ---


# Made once: json.dumps with options builds an encoder at every call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_SORTED = json.JSONEncoder(separators=(",", ":"), allow_nan=False, sort_keys=True)


def _to_json(data):
    """Compact JSON text, or SessionDataError: never store what will not load back."""
    try:
        return _COMPACT.encode(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SessionDataError(
            f"session data must be JSON (str, number, bool, None, list, dict): {exc}") from None


def _canonical(value):
    """JSON text with sorted keys: equal texts are equal data, nested values included, with
    1, 1.0 and True told apart as JSON does (express-session compares a hash of the JSON to
    the same end).  None for what is not JSON: unequal to any text, a change the save refuses."""
    try:
        return _SORTED.encode(value)
    except (TypeError, ValueError):  # not JSON, or keys of several types that cannot be sorted
        try:
            return _to_json(value)
        except SessionDataError:
            return None


MAX_OWNER = 256  # characters of an owner id


def _is_utf8(text):
    """Whether a store can keep it: a lone surrogate has no UTF-8 (nor BSON) form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Session(dict):
    """One visitor's data: a dict that knows whether it changed.

    Per-session settings a route may change (express: req.session.cookie):
      max_age  seconds it may stay unused; None: a browser-session cookie,
               which the store still ends after Options.max_age unused
      owner    who it belongs to (a user id), to list and end a user's sessions
    The rest is set by SessionInterface; a route reads it."""

    def __init__(self, data=(), *, max_age=DEFAULT_MAX_AGE, sid=None):
        super().__init__(data)
        self.id = new_id() if sid is None else sid  # a new session's: 192 random bits
        self.is_new = True  # not in the store (yet)
        self.cookie_id = None  # the verified id the request arrived with (express's cookieId)
        self.max_age = max_age
        self._initial_max_age = max_age
        self._owner = None
        self.expires = None  # epoch seconds, as stored
        self.absolute_expires = None  # epoch seconds, or None: another service started it
        self.started = None  # epoch seconds, or None: another service started it
        self.regenerated = False  # delete cookie_id at save
        self.destroyed = False
        self.touched = False
        self.stored = None  # the stored JSON text it was loaded from, for compare-and-set
        self.stored_owner = None
        self._saved = "{}"  # the data as loaded or last saved (_canonical): a new one's is empty
        self._saved_max_age = max_age

    @property
    def owner(self):
        return self._owner

    @owner.setter
    def owner(self, owner):
        if owner is not None and not (isinstance(owner, str) and 1 <= len(owner) <= MAX_OWNER
                                      and _is_utf8(owner)):
            raise SessionDataError(f"owner must be a string of 1 to {MAX_OWNER} characters, "
                                   f"or None; got {owner!r:.80}")
        self._owner = owner

    def changed_keys(self):
        """The top-level keys whose value differs from what was loaded or last saved."""
        before = json.loads(self._saved)

        def differs(key):
            return key not in before or key not in self or \
                _canonical(before[key]) != _canonical(self[key])
        return {key for key in before.keys() | self.keys() if differs(key)}

    @property
    def modified(self):
        return _canonical(self) != self._saved or self.owner != self.stored_owner or \
            self.max_age != self._saved_max_age

    def regenerate(self):
        """Start afresh under a new id; the id the request arrived with is deleted at save.
        OWASP: renew the id when privilege changes (login), against session fixation."""
        self.clear()
        self.id = new_id()
        self.is_new = True
        self.stored = None
        self.regenerated = True
        self.destroyed = False  # a logout and then a login, in one request: the login stands
        self.expires = None
        self.absolute_expires = None
        self.started = None
        self.max_age = self._initial_max_age
        self._saved_max_age = self._initial_max_age
        self.owner = None
        self.stored_owner = None
        self._saved = "{}"

    def destroy(self):
        """End the session: delete it from the store and expire the cookie."""
        self.clear()
        self.destroyed = True

    def touch(self):
        """Extend the idle expiry at save even if the touch interval has not passed."""
        self.touched = True

    def _mark_saved(self):
        """What was just stored becomes what later changes are found against."""
        self.is_new = False
        self.regenerated = False
        self._saved = _canonical(self)
        self._saved_max_age = self.max_age
        self.stored_owner = self.owner


# --- The store contract ---


class Record(NamedTuple):
    """One stored session.  Times are epoch seconds; None: not known (another service wrote it)."""

    text: object  # the 'session' field: express-session's JSON (data + cookie object), as stored
    expires: float  # the earlier of the idle and the absolute deadline
    owner: str | None = None  # who the session belongs to, indexed
    created: float | None = None  # when it started (connect-mongo's createdAt)
    extended: float | None = None  # when its expiry last moved (connect-mongo's lastModified)
    client: str | None = None  # the User-Agent at its start, trimmed: shown, never trusted


class Store(Protocol):
    """What SessionInterface asks of a store: express-session's get, set,
    destroy and touch, with a compare-and-set instead of a blind set, and an
    owner's sessions.  Keys are strings (the id, or its digest at rest).  A
    store that cannot answer raises StoreUnavailable, never its driver's error."""

    def load(self, key, now):
        """The Record under key if it is live (expires > now), else None."""

    def insert(self, key, record, replacing=None):
        """Store a new session under a key never used before.  If `replacing` names
        a live session, delete it after: at a cap, a re-login takes its place."""

    def compare_and_set(self, key, previous, record, now):
        """Store record's text, expiry and owner if the live session under key still
        has the text `previous`; return whether it did.  Never creates a session."""

    def touch(self, key, expires, now):
        """Move a live session's expiry (and `extended` to now); return whether it was live."""

    def delete(self, key):
        """Delete the session under key, if there is one."""

    def owned(self, owner, now):
        """The live sessions of owner, as (key, Record) pairs, without scanning the others."""

    def delete_owned(self, owner, now, keep=None):
        """Delete every live session of owner but the one under `keep`; return how many
        (expired ones are left to purge)."""

    def purge(self, now):
        """Delete every session that expired by now; return how many."""

    def ping(self):
        """Return if the store answers; raise StoreUnavailable if not."""


# --- MongoStore: any pymongo-compatible collection ---

COLLECTION_METHODS = ("find_one", "find", "insert_one", "update_one", "delete_one", "delete_many",
                      "create_index")
OWNER_INDEX = [("owner", 1), ("expires", 1)]


class MongoStore:
    """Session documents in a MongoDB collection (connect-mongo's shape).

    `driver_error`: the exception your driver raises when MongoDB fails
    (pymongo.errors.PyMongoError); it becomes StoreUnavailable.  Any exception by
    default, so a prototype's outage is a 503, never a 500.  The TTL and owner
    indexes are made at once (idempotent), unless `ensure_indexes=False`."""

    def __init__(self, collection, *, driver_error=Exception, ensure_indexes=True):
        # Looked up on the type: a pymongo Database answers any attribute with a collection
        # of that name.
        missing = [name for name in COLLECTION_METHODS
                   if not callable(getattr(type(collection), name, None))]
        if missing:
            raise TypeError("MongoStore needs a pymongo Collection "
                            f"(it has no {', '.join(missing)}); got {type(collection).__name__}")
        self.collection = collection
        self.driver_error = driver_error
        if ensure_indexes:
            self.ensure_indexes()

    def ensure_indexes(self):
        with self._driver():
            # MongoDB deletes a document once its 'expires' has passed (about once a minute),
            # as connect-mongo's default autoRemove: 'native' does.
            self.collection.create_index([("expires", 1)], expireAfterSeconds=0)
            # An owner's sessions are found through this index, never by scanning.
            self.collection.create_index(OWNER_INDEX)

    def load(self, key, now):
        # Filter on expires: the TTL sweep runs about once a minute; an expired session is
        # never served.
        with self._driver():
            doc = self.collection.find_one({"_id": key, "expires": {"$gt": to_datetime(now)}})
        return None if doc is None else _record(doc)

    def insert(self, key, record, replacing=None):
        doc = {"_id": key, "expires": to_datetime(record.expires), "session": record.text}
        for field, value in (("owner", record.owner), ("client", record.client)):
            if value is not None:
                doc[field] = value
        for field, value in (("createdAt", record.created), ("lastModified", record.extended)):
            if value is not None:
                doc[field] = to_datetime(value)
        with self._driver():
            self.collection.insert_one(doc)
        if replacing is not None:
            self.delete(replacing)

    def compare_and_set(self, key, previous, record, now):
        found = {"_id": key, "session": previous, "expires": {"$gt": to_datetime(now)}}
        update = {"$set": {"session": record.text, "expires": to_datetime(record.expires),
                           "lastModified": to_datetime(now)}}
        if record.owner is None:
            update["$unset"] = {"owner": ""}
        else:
            update["$set"]["owner"] = record.owner
        with self._driver():
            return self.collection.update_one(found, update).matched_count == 1

    def touch(self, key, expires, now):
        found = {"_id": key, "expires": {"$gt": to_datetime(now)}}
        update = {"$set": {"expires": to_datetime(expires), "lastModified": to_datetime(now)}}
        with self._driver():
            return self.collection.update_one(found, update).matched_count == 1

    def delete(self, key):
        with self._driver():
            self.collection.delete_one({"_id": key})

    def owned(self, owner, now):
        # The hint makes MongoDB use the owner index (its documented rule), not the TTL index.
        found = {"owner": owner, "expires": {"$gt": to_datetime(now)}}
        with self._driver():
            return [(doc["_id"], _record(doc))
                    for doc in self.collection.find(found, hint=OWNER_INDEX)]

    def delete_owned(self, owner, now, keep=None):
        found = {"owner": owner, "expires": {"$gt": to_datetime(now)}}
        if keep is not None:
            found["_id"] = {"$ne": keep}
        with self._driver():
            return self.collection.delete_many(found, hint=OWNER_INDEX).deleted_count

    def purge(self, now):
        """For collections without a TTL monitor."""
        with self._driver():
            found = {"expires": {"$lte": to_datetime(now)}}
            return self.collection.delete_many(found).deleted_count

    def ping(self):
        with self._driver():
            self.collection.database.command("ping")

    def _driver(self):
        return _Translate(self.driver_error)


class _Translate:
    """A with-block in which the driver's error becomes StoreUnavailable
    (the original as __cause__)."""

    def __init__(self, driver_error):
        self.driver_error = driver_error

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if (error is not None and isinstance(error, self.driver_error) and
                not isinstance(error, SessionError)):
            # Only the type: a driver's message may name hosts and credentials.
            raise StoreUnavailable(type(error).__name__) from error
        return False


def _record(doc):
    def when(field):
        value = doc.get(field)
        return to_timestamp(value) if isinstance(value, datetime) else None

    def text(field):
        value = doc.get(field)
        return value if isinstance(value, str) else None
    return Record(doc.get("session"), to_timestamp(doc["expires"]), text("owner"),
                  when("createdAt"), when("lastModified"), text("client"))


# --- MemoryStore: one process's memory ---


class MemoryStore:
    """Sessions in this process's memory, lost when it stops: for one process
    (a prototype, a test), never for several instances behind a proxy.

    key -> Record, beside two indexes: owner -> keys, and a heap of (time, key)
    so that purging visits only what is due.  Each session has one entry in the
    heap, at or before its expiry: a session extended since is put back at its
    new expiry when its entry comes due, so extending costs no heap work.
    Reads take no lock (one dict lookup is atomic); writes take one, never for
    more than PURGE_CHUNK entries of expiry work.

    At max_sessions a new session ends the one nearest its end (Redis's
    volatile-ttl) rather than being refused: a flood of logins can never lock
    everyone out, and the sessions in use, extended as they are used, go last."""

    PURGE_CHUNK = 1000  # sessions deleted per lock hold: a short hold, so requests are not held up
    PURGE_PER_INSERT = 16  # expiry work each insert does, so expired sessions never pile up

    def __init__(self, max_sessions=None, clock=time.time):
        self.max_sessions = max_sessions  # max_sessions None: no cap
        self.clock = clock
        self._records = {}
        self._owned = {}  # owner -> set of keys
        self._due = []  # heap of (time, key): when to look at the session again
        self._scheduled = {}  # key -> its time in the heap (an entry with another time is stale)
        self._lock = threading.Lock()
        self.evicted = 0  # sessions ended early to make room

    def __len__(self):
        """The live sessions: expired ones are purged first."""
        self.purge(self.clock())
        return len(self._records)

    def load(self, key, now):
        record = self._records.get(key)
        return record if record is not None and record.expires > now else None

    def insert(self, key, record, replacing=None):
        with self._lock:  # nothing between here and _put can fail: the replaced one may go first
            if replacing is not None:
                self._remove(replacing)
            self._purge(self.clock(), self.PURGE_PER_INSERT)
            while self.max_sessions and len(self._records) >= self.max_sessions:
                self._evict_nearest_end()  # a cap, so a flood of logins cannot exhaust the memory
            self._put(key, record._replace(expires=_millis(record.expires)))

    def compare_and_set(self, key, previous, record, now):
        with self._lock:
            old = self.load(key, now)
            if old is None or old.text != previous:
                return False
            self._put(key, old._replace(text=record.text, expires=_millis(record.expires),
                                        owner=record.owner, extended=now))
            return True

    def touch(self, key, expires, now):
        with self._lock:
            old = self.load(key, now)
            if old is None:
                return False
            self._put(key, old._replace(expires=_millis(expires), extended=now))
            return True

    def delete(self, key):
        with self._lock:
            self._remove(key)

    def owned(self, owner, now):
        keys = tuple(self._owned.get(owner, ()))  # a copy: writers may change the set meanwhile
        found = ((key, self.load(key, now)) for key in keys)
        return [(key, record) for key, record in found if record is not None]

    def delete_owned(self, owner, now, keep=None):
        with self._lock:
            keys = [key for key in self._owned.get(owner, ())
                    if key != keep and self._records[key].expires > now]
            for key in keys:
                self._remove(key)
            return len(keys)

    def purge(self, now):
        total = 0
        more = True
        while more:
            with self._lock:  # released between chunks: requests go on while a big purge runs
                deleted, more = self._purge(now, self.PURGE_CHUNK)
            total += deleted
        return total

    def ping(self):
        pass

    def _put(self, key, record):
        old = self._records.get(key)
        if old is not None and old.owner != record.owner:
            self._disown(key, old.owner)
        if record.owner is not None:
            self._owned.setdefault(record.owner, set()).add(key)
        self._records[key] = record
        if key not in self._scheduled or record.expires < self._scheduled[key]:
            self._schedule(key, record.expires)  # new, or shortened: looked at again in time

    def _schedule(self, key, when):
        self._scheduled[key] = when
        heapq.heappush(self._due, (when, key))

    def _remove(self, key):
        record = self._records.pop(key, None)  # its heap entry is skipped when it comes due
        if record is not None:
            del self._scheduled[key]
            self._disown(key, record.owner)

    def _disown(self, key, owner):
        keys = self._owned.get(owner)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._owned[owner]

    def _evict_nearest_end(self):
        """Every entry is at or before its session's expiry: the first that is not stale or
        extended is the session nearest its end."""
        while self._due:
            when, key = heapq.heappop(self._due)
            if self._scheduled.get(key) != when:
                continue  # stale: deleted, or scheduled earlier since
            if self._records[key].expires > when:
                self._schedule(key, self._records[key].expires)  # extended since: due then
                continue
            self._remove(key)
            self.evicted += 1
            return

    def _purge(self, now, budget):
        """Delete the sessions that expired by now, looking at up to `budget` heap entries;
        return (deleted, whether more may be due)."""
        deleted = 0
        for _ in range(budget):
            if not self._due or self._due[0][0] > now:
                return deleted, False
            when, key = heapq.heappop(self._due)
            if self._scheduled.get(key) != when:
                continue  # stale: deleted, or scheduled earlier since
            if self._records[key].expires > now:
                self._schedule(key, self._records[key].expires)  # extended since: due then
            else:
                self._remove(key)
                deleted += 1
        return deleted, bool(self._due) and self._due[0][0] <= now


def _millis(timestamp):
    return math.floor(timestamp * 1000) / 1000  # the milliseconds BSON keeps, so both stores agree


# --- The request lifecycle ---

MERGE_ATTEMPTS = 10  # each round one writer wins, so this many concurrent writers always finish
CLIENT_MAX = 200  # characters of User-Agent kept
WARN_EVERY = 60  # seconds between two warnings about the same misconfiguration


class SessionInfo(NamedTuple):
    """What a listing of an owner's sessions shows: never the id, nor anything it can be
    computed from."""

    handle: str  # a public name for ending it
    started: float | None
    last_extended: float | None
    expires: float  # the idle expiry, capped by the absolute one
    absolute_expires: float | None
    client: str | None


def _load_data(text):
    """The stored JSON as a dict, or None if it is not one (another writer, a corrupt store)."""
    if not isinstance(text, (str, bytes, bytearray)):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _client_text(user_agent):
    """A User-Agent as shown in a listing: printable, one line, at most CLIENT_MAX characters."""
    if not user_agent:
        return None
    printable = "".join(c if c.isprintable() else " " for c in user_agent)
    return " ".join(printable.split())[:CLIENT_MAX] or None


class SessionInterface:
    """Opens a session from a request's cookie and saves it after the response
    is built: the two halves of a request (Flask's SessionInterface)."""

    def __init__(self, store, options, clock=time.time):
        self.store = store
        self.options = options
        self.clock = clock
        self.signer = Signer(options.secrets)
        self._warned_at = -math.inf

    # Opening

    def read_cookie(self, cookie_header):
        """The session cookie's value as sent, URL-decoded (or None), and the id
        in it if it has express's "s:" prefix and one of our secrets signed it (or None)."""
        raw = parse_cookie_header(cookie_header).get(self.options.cookie_name)
        if raw is None or not raw.startswith("s:"):
            return raw, None
        return raw, self.signer.unsign(raw[2:])

    def open_session(self, cookie_header, *, https=False, path="/", client=None):
        """Return the request's session, or a new empty one.  This is the one
        place where a bad cookie becomes "no session": missing, unsigned,
        wrongly signed, unknown, expired and unreadable all start afresh.
        `client` is the User-Agent, recorded when a session starts."""
        opts = self.options
        now = self.clock()
        max_age = None if opts.browser_session_cookie else opts.max_age
        # Outside the cookie's path the browser sends no cookie: as express does, leave it alone.
        inside = path_matches(path, opts.cookie_path)
        sid = self.read_cookie(cookie_header)[1] if inside else None
        # No valid cookie: no store work.
        record = self.store.load(self.key(sid), now) if sid else None
        data = _load_data(record.text) if record else None
        cookie = data.pop("cookie", None) if data is not None else None
        absolute = from_iso(data.pop("absoluteExpires", None)) if data is not None else None
        # OWASP: the absolute timeout ends a session, whoever extended 'expires'.
        live = data is not None and (absolute is None or absolute > now)
        session = Session(data if live else (), max_age=max_age, sid=sid if live else None)
        session._https = https
        session._client = client
        session._outside = not inside
        # Unknown, expired or unreadable, a session starts afresh; but a login or logout
        # still deletes the document this verified cookie names.
        session.cookie_id = sid
        if live:
            session.is_new = False
            session.stored = record.text
            session.expires = record.expires
            session.absolute_expires = absolute
            session.started = record.created
            session.owner = record.owner
            session.max_age = self._stored_max_age(cookie, max_age)
            session._mark_saved()
        return session

    @staticmethod
    def _stored_max_age(cookie, default):
        """The session's own max_age from express's cookie object: originalMaxAge in
        milliseconds, null for a browser-session cookie."""
        if not isinstance(cookie, dict) or "originalMaxAge" not in cookie:
            return default
        value = cookie["originalMaxAge"]
        if value is None:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e12
        return value / 1000 if ok else default

    # Saving

    def save_session(self, session):
        """Write what the request changed and return the Set-Cookie value to send, or None.
        Raises SessionDataError, SessionConflict, InsecureTransport and StoreUnavailable."""
        if session._outside:
            return None
        if session.destroyed:
            if session.cookie_id:
                self.store.delete(self.key(session.cookie_id))
            return self._clearing_cookie(session)
        now = self.clock()
        was_new = session.is_new
        changed = session.modified
        extended = session.touched or self.touch_due(session, now)
        if was_new and self._secure(session) and not session._https:
            self._warn_insecure()
            if changed:  # a login: say so, rather than a 2xx for a session nobody will send back
                raise InsecureTransport("this session's cookie is Secure-only: start it over HTTPS")
            return None
        if self.should_save(session, changed):
            self._write(session, now)
            session._mark_saved()
        elif self.should_touch(session, extended):
            if not self.store.touch(self.key(session.id), self._extended_expiry(session, now), now):
                return None  # ended meanwhile (logout, expiry): nothing to extend
            session.expires = self._extended_expiry(session, now)
        elif session.regenerated and session.cookie_id:
            # Regenerated and left empty: the id the request arrived with still stops working.
            self.store.delete(self.key(session.cookie_id))
        if session.is_new:  # nothing stored
            if session.regenerated:
                session.cookie_id = None
                session.regenerated = False
            return None
        session.cookie_id = session.id
        if not self.should_set_cookie(session, was_new, changed, extended):
            return None
        signed = "s:" + self.signer.sign(session.id)  # the first secret signs
        if session.max_age is None:
            return format_set_cookie(self.options.cookie_name, signed, max_age=None, expires=None,
                                     **self._attributes(session))
        return format_set_cookie(self.options.cookie_name, signed, max_age=session.expires - now,
                                 expires=session.expires, **self._attributes(session))

    def should_save(self, session, modified):
        """express's shouldSave: a new session once it holds something (or always,
        with save_uninitialized); a loaded one when it changed (or always, with resave)."""
        if session.is_new:
            return modified or self.options.save_uninitialized
        return modified or self.options.resave

    def should_touch(self, session, extended):
        """express's shouldTouch, lazily: a loaded session that was not rewritten gets
        an expiry-only write when its expiry would move by touch_after or more, or touch()
        asked for one (`extended`)."""
        return not session.is_new and extended

    def should_set_cookie(self, session, was_new, changed, extended):
        """express's shouldSetCookie: a new id, a change, or rolling.  Here also a moved
        expiry, so the browser keeps the cookie as long as the store keeps the session;
        rolling re-sends the stored expiry rather than promise one the store does not keep."""
        if was_new or self.options.rolling:
            return True
        return session.max_age is not None and (changed or extended)

    def touch_due(self, session, now):
        if session.is_new:
            return False
        idle = self.options.max_age if session.max_age is None else session.max_age
        # A session's own short max_age is touched a tenth as often, or use could not keep it.
        interval = min(self.options.touch_after, idle / 10)
        return self._extended_expiry(session, now) - session.expires >= interval

    def _write(self, session, now):
        secure = self._secure(session)
        if session.is_new:
            session.started = now
            session.absolute_expires = self._absolute_deadline(session, now)
            session.expires = self._extended_expiry(session, now)
            session.stored = self._serialise(session, secure)
            record = Record(session.stored, session.expires, session.owner, now, now,
                            _client_text(session._client))
            replacing = (self.key(session.cookie_id) if session.regenerated and session.cookie_id
                         else None)
            # Stored before the old one goes: if this fails, the visitor keeps a valid session.
            self.store.insert(self.key(session.id), record, replacing=replacing)
            session.is_new = False
        else:
            self._replace(session, now, secure)

    def _absolute_deadline(self, session, started):
        """The absolute timeout after the start; "remember me" (a longer max_age than the
        service's) is not cut by it: the session may then live as long as its own max_age."""
        lifetime = self.options.absolute_timeout
        if session.max_age is not None and session.max_age > self.options.max_age:
            lifetime = max(lifetime, session.max_age)
        return started + lifetime

    def _reset_absolute(self, session):
        """The absolute deadline after a change of max_age: from the start when known, else
        only ever later (another service started it)."""
        if session.started is not None:
            session.absolute_expires = self._absolute_deadline(session, session.started)
        else:
            longer = self._absolute_deadline(session, self.clock())
            session.absolute_expires = max(session.absolute_expires, longer)

    def _extended_expiry(self, session, now):
        idle = self.options.max_age if session.max_age is None else session.max_age
        deadline = session.absolute_expires or math.inf
        return min(now + idle, deadline)  # the absolute timeout always wins

    def _replace(self, session, now, secure):
        """Save a changed session without losing a concurrent request's change:
        compare-and-set on the stored JSON; on a clash re-read, apply our own
        changes (top-level keys, found once against the load) to their
        version, and try again (bounded)."""
        changed = session.changed_keys()
        ours = {key: session[key] for key in changed if key in session}
        owner_changed = session.owner != session.stored_owner
        max_age_changed = session.max_age != session._saved_max_age
        if session.absolute_expires is None:  # another service started it: from now on
            session.absolute_expires = self._absolute_deadline(session, now)
        elif max_age_changed:  # "remember me" ticked, or unticked, on a stored session
            self._reset_absolute(session)
        key = self.key(session.id)
        for _ in range(MERGE_ATTEMPTS):
            session.expires = self._extended_expiry(session, now)
            text = self._serialise(session, secure)
            if self.store.compare_and_set(key, session.stored,
                                          Record(text, session.expires, session.owner), now):
                session.stored = text
                return
            record = self.store.load(key, now)
            theirs = _load_data(record.text) if record else None
            if theirs is None:  # gone (logout, expiry) or made unreadable
                raise SessionConflict("the session ended while this request was changing it")
            session.clear()
            session.update({k: v for k, v in theirs.items()
                            if k not in changed and k not in RESERVED_KEYS})
            session.update(ours)
            session.stored = record.text
            # What this request did not change is theirs: the owner, the lifetime.
            if not owner_changed:
                session.owner = record.owner
                session.stored_owner = record.owner
            if not max_age_changed:
                session.max_age = self._stored_max_age(theirs.get("cookie"), session.max_age)
                session._saved_max_age = session.max_age
                theirs_absolute = from_iso(theirs.get("absoluteExpires"))
                if theirs_absolute is not None:
                    session.absolute_expires = theirs_absolute
        raise SessionConflict("the session kept changing under this request "
                              f"({MERGE_ATTEMPTS} attempts)")

    def _serialise(self, session, secure):
        """The stored JSON: the data plus the cookie object express-session writes."""
        clash = [key for key in RESERVED_KEYS if key in session]
        if clash:
            raise SessionDataError(f"session keys {clash} are reserved; use other names")
        persistent = session.max_age is not None
        # originalMaxAge is in milliseconds, as express writes it.
        cookie = {"originalMaxAge": round(session.max_age * 1000) if persistent else None,
                  "expires": to_iso(session.expires) if persistent else None,
                  "secure": bool(secure), "httpOnly": True}
        if self.options.cookie_domain:
            cookie["domain"] = self.options.cookie_domain
        cookie.update(path=self.options.cookie_path, sameSite=self.options.cookie_samesite)
        text = _to_json({"cookie": cookie, **session,
                         "absoluteExpires": to_iso(session.absolute_expires)})
        size = len(text.encode())
        if size > self.options.max_size:
            raise SessionDataError(f"session data is {size} bytes, "
                                   f"over the {self.options.max_size}-byte cap")
        return text

    def _secure(self, session):
        secure = self.options.cookie_secure
        return session._https if secure == "auto" else secure

    def _attributes(self, session):
        opts = self.options
        return {"path": opts.cookie_path, "domain": opts.cookie_domain,
                "secure": self._secure(session), "samesite": opts.cookie_samesite}

    def _clearing_cookie(self, session):
        # Cleared with the same Path and Domain it was set with, or the browser keeps it.
        return format_set_cookie(self.options.cookie_name, "", max_age=0, expires=0,
                                 **self._attributes(session))

    def _warn_insecure(self):
        now = self.clock()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning("a session was not started: its cookie must be Secure (cookie_secure=True) "
                        "and the request came over plain HTTP.  Behind a TLS proxy, trust it "
                        "(TRUST_PROXY) so its X-Forwarded-Proto counts.")

    # Owners: list and end a user's sessions

    def key(self, sid):
        """The store's key for a session id: the id itself, or its SHA-256 (hex) at rest, so a
        copy of the store holds no id a cookie could carry."""
        if self.options.id_at_rest == "sha256":
            return hashlib.sha256(sid.encode()).hexdigest()
        return sid

    @staticmethod
    def handle_of_key(key):
        """A public name for a session, for listings and logs: a digest of its key,
        from which neither the key nor the id can be computed."""
        digest = hashlib.sha256(b"session handle\x00" + key.encode()).digest()
        return base64.urlsafe_b64encode(digest[:15]).decode()

    def handle(self, session):
        return self.handle_of_key(self.key(session.id))

    def list_sessions(self, owner):
        """The live sessions of owner, newest first."""
        now = self.clock()
        infos = []
        for key, record in self.store.owned(owner, now):
            data = _load_data(record.text) or {}
            infos.append(SessionInfo(self.handle_of_key(key), record.created, record.extended,
                                     record.expires, from_iso(data.get("absoluteExpires")),
                                     record.client))
        return sorted(infos, key=lambda info: info.started or 0, reverse=True)

    def end_session(self, owner, handle):
        """End the session of owner that has this handle; return whether there was one."""
        for key, _ in self.store.owned(owner, self.clock()):
            if self.handle_of_key(key) == handle:  # not a secret: only its owner may use it
                self.store.delete(key)
                return True
        return False

    def end_sessions(self, owner, keep=None):
        """End every live session of owner but the session `keep`; return how many ended."""
        keep = None if keep is None else self.key(keep.id)
        return self.store.delete_owned(owner, self.clock(), keep=keep)
