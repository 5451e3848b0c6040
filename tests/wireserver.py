"""A small MongoDB stand-in for the tests: mongomock behind the real wire protocol.

How it works
------------
No ``mongod`` can run on this machine, so the tests talk to this server instead.
mockupdb accepts TCP connections on 127.0.0.1 and decodes each client message
(OP_MSG, or OP_QUERY for the first handshake); one handler turns the command
document into calls on a mongomock in-memory ``MongoClient`` and sends back a
reply shaped like MongoDB's. Real drivers (pymongo 4.20, the node ``mongodb``
driver 7.9 used by connect-mongo 6) connect to it as to a standalone mongod that
reports wire version 21 (MongoDB 7.0).

    python tests/wireserver.py --port PORT [--data FILE] [--ttl-monitor SECONDS]

On start it prints ``READY <port>`` (``--port 0`` picks a free port). SIGTERM or
SIGINT stops it. ``--data FILE`` keeps the data across restarts: after every
write the whole server is written to FILE (tmp file + ``os.replace``) and FILE
is loaded at start. Without it, everything lives in memory only.

mongomock is not thread-safe, so one lock serialises every command; each
connection has its own thread and gets only its own replies.

Fault injection (a command MongoDB does not have)
    ``{testFault: "hang"}``  read every later request, answer none of them
    ``{testFault: "drop"}``  close the connection on every later request
    ``{testFault: "off"}``   behave normally again
``testFault`` itself is always answered, in every mode. A driver cannot
handshake with a hung server, so use ``send_command`` below (raw OP_MSG, no
handshake) or ``ServerProcess.set_fault`` to switch a fault off.

Command counting (another command MongoDB does not have), for benchmarks
    ``{testCounters: "get"}``    answer ``{counts: {command name: n}}`` since the last reset
    ``{testCounters: "reset"}``  answer the same, then start again from zero
Handshake and monitoring commands (hello, isMaster, ping, endSessions) and
the test commands themselves are not counted. ``ServerProcess.counters``
sends it without a driver.

THIS IS NOT MONGODB. Gaps met while building it:
- Every result is returned in the first batch with cursor id 0; ``batchSize``
  is ignored and ``getMore`` always fails with CursorNotFound (43). A reply
  larger than 48 MB would break the protocol.
- TTL: a monitor thread deletes expired documents every ``--ttl-monitor``
  seconds (60 by default, like mongod's ``ttlMonitorSleepSecs``); 0 turns it
  off. mongomock's own TTL handling is not used, because it deletes expired
  documents on every read, which MongoDB never does.
- Commands served: hello/isMaster/ismaster, ping, buildInfo, find, insert,
  update, delete, findAndModify, count, distinct, aggregate (on a collection,
  through mongomock's pipeline support), createIndexes, listIndexes,
  listCollections, listDatabases (sizes are 0), drop, dropDatabase, endSessions,
  killCursors, getMore (error).
  Everything else answers ``{ok: 0, code: 59, codeName: "CommandNotFound"}``:
  among them create, dropIndexes, renameCollection, collMod, bulkWrite,
  serverStatus, getParameter, authentication (no users, no auth) and all
  replication commands. Transactions are refused as a standalone mongod
  refuses them (code 20).
- OP_QUERY is accepted only for the hello/isMaster handshake (like MongoDB 6+);
  legacy OP_INSERT/OP_UPDATE/OP_DELETE/OP_GET_MORE close the connection.
  Compression, TLS and the streaming ("awaitable") hello are not offered.
- Pipeline-style updates (``u`` is a list) are refused (code 238). The
  options arrayFilters, collation, hint, let, maxTimeMS, readConcern and
  writeConcern are ignored; w:0 writes (moreToCome) are run and not
  answered, as in MongoDB.
- Query, update and aggregation semantics are mongomock's, not MongoDB's: most
  operators work, some rare ones raise NotImplemented (code 238). Write
  errors other than duplicate keys carry mongomock's code, or 2.
- Index support is what mongomock enforces: unique (and sparse/partial) indexes
  are checked, other index types are recorded only. Duplicate-key errors carry
  code 11000 and ``keyPattern``/``keyValue`` when the index can be found.
- ``createIndexes`` conflicts are reported with codes 85/86 by simple rules
  (same name or same key with different options), not MongoDB's full set.
- ``drop`` of a missing collection succeeds (as in MongoDB 7.0); there is no
  ``create`` command, collections appear on first write or index.
- There is no real concurrency: commands run one at a time, and mockupdb
  holds its own lock while a reply is sent, so a client that stops reading
  its replies could stall the others. SIGTERM lets the running command finish
  and then exits without closing client connections politely.

nx-27017 (started by ``start_nx27017``) is a second stand-in, backed by
SQLite. Gaps of nx-27017 0.8.1 met here, so tests that need MongoDB's
behaviour should use this server instead:
- A query combining ``_id`` with ``$or`` ignores the ``_id``: the lookup
  connect-mongo makes, ``{_id, $or: [{expires: {$exists: false}},
  {expires: {$gt: now}}]}``, returns another session.
- ``$set`` of a top-level date on an existing document stores a string
  ("2030-01-01 12:00:00.123000"): update_one, update_many, upsert on an
  existing document, findAndModify, and connect-mongo's touch. Dates in an
  insert, in a replacement, in an upsert that inserts, or nested inside a
  $set sub-document stay dates.
- Such strings still match ``$gt``/``$lte`` against a date (compared as text,
  no type bracketing), but not ``$type: "date"``.
- listIndexes names an index ``idx_<collection>_<field>`` (e.g.
  ``idx_sessions_expires``), not the name the driver sent (``expires_1``).
- An unknown command answers ``{ok: 1, result: []}`` instead of code 59.
- It reports minWireVersion 17 and maxWireVersion 25.
- It writes a PID file (default ``/tmp/nx_27017.pid``, shared by all
  instances) and refuses to start while the PID in it is alive, so
  ``start_nx27017`` gives each instance its own PID and log file next to the
  database file.
"""

from __future__ import annotations

import argparse
import datetime
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import bson
import mongomock
import pymongo
from bson.int64 import Int64
from mockupdb import MockupDB, OpMsg
from mongomock.filtering import filter_applies

# --- Constants ---

MAX_WIRE_VERSION = 21  # MongoDB 7.0; pymongo 4.20 and node driver 7.9 need >= 9
SERVER_VERSION = "7.0.0"
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024  # bytes
MAX_MESSAGE_SIZE = 48_000_000  # bytes
MAX_WRITE_BATCH_SIZE = 100_000  # documents
SESSION_TIMEOUT_MINUTES = 30  # logicalSessionTimeoutMinutes
DEFAULT_TTL_MONITOR = 60.0  # seconds, mongod's ttlMonitorSleepSecs
OP_MSG = 2013
MORE_TO_COME = 1 << 1  # OP_MSG flag: the client expects no reply
FAULT_MODES = ("off", "hang", "drop")
COUNTER_ACTIONS = ("get", "reset")
# Not counted by testCounters: what drivers send on their own, whatever the app does.
UNCOUNTED = {"hello", "isMaster", "ismaster", "ping", "endSessions", "testFault", "testCounters"}
HERE = os.path.abspath(__file__)

# Commands that change data; the data file is rewritten after each of them.
WRITE_COMMANDS = {"insert", "update", "delete", "findAndModify", "findandmodify",
                  "createIndexes", "drop", "dropDatabase", "aggregate"}

# Index options compared by createIndexes; anything else is accepted and ignored.
INDEX_OPTIONS = ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression")


def utcnow():
    """Naive UTC, the form in which bson decodes dates."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def index_options(spec):
    """The options of an index spec that matter; false and null mean absent
    (but expireAfterSeconds 0 is a real TTL)."""
    return {o: spec[o] for o in INDEX_OPTIONS if spec.get(o) is not None and spec.get(o) is not False}


# --- Errors ---

class CommandError(Exception):
    """Raised by a command handler; becomes {ok: 0, errmsg, code, codeName}."""

    def __init__(self, code, code_name, errmsg):
        super().__init__(errmsg)
        self.code = code
        self.code_name = code_name
        self.errmsg = errmsg

    def reply(self):
        return {"ok": 0, "errmsg": self.errmsg, "code": self.code,
                "codeName": self.code_name}


def error_reply(exc):
    """Map any exception from a handler (or from mongomock) to MongoDB's error shape."""
    if isinstance(exc, CommandError):
        return exc.reply()
    if isinstance(exc, mongomock.OperationFailure):
        return {"ok": 0, "errmsg": str(exc), "code": exc.code or 2,
                "codeName": "BadValue" if not exc.code else "OperationFailure"}
    if isinstance(exc, NotImplementedError):
        return CommandError(238, "NotImplemented", f"not supported by wireserver: {exc}").reply()
    if isinstance(exc, (KeyError, TypeError, ValueError)):
        return CommandError(9, "FailedToParse", f"malformed command: {exc!r}").reply()
    return CommandError(1, "InternalError", f"wireserver bug: {exc!r}").reply()


# --- The database: mongomock behind one lock ---

class Backend:
    """Runs command documents against a mongomock client, one at a time.

    TTL index options are kept here, not in mongomock (see the module
    docstring); ``self._ttl`` maps (db, collection, index name) to
    (field, expireAfterSeconds).
    """

    def __init__(self, data_path=None, clock=utcnow):
        self._client = mongomock.MongoClient()
        self._lock = threading.Lock()  # mongomock is not thread-safe
        self._ttl = {}
        self._data_path = data_path
        self._clock = clock
        if data_path and os.path.exists(data_path):
            self._load(data_path)

    def run(self, db_name, cmd):
        """Run one command document; return the reply document (errors included)."""
        name = next(iter(cmd))
        handler = COMMANDS.get(name)
        if handler is None:
            return CommandError(59, "CommandNotFound", f"no such command: '{name}'").reply()
        if "startTransaction" in cmd or "autocommit" in cmd:
            return CommandError(20, "IllegalOperation", "Transaction numbers are only "
                                "allowed on a replica set member or mongos").reply()
        with self._lock:
            try:
                reply = handler(self, self._client[db_name], cmd)
            except Exception as exc:  # every failure is answered, never dropped
                reply = error_reply(exc)
            if self._data_path and name in WRITE_COMMANDS:
                self._save(self._data_path)
        reply.setdefault("ok", 1)
        return reply

    def shutdown(self):
        """Wait for the running command, then refuse all others until exit."""
        self._lock.acquire()  # never released: the process is ending

    def expire_documents(self):
        """One pass of the TTL monitor: delete documents whose date has passed."""
        now = self._clock()
        deleted = 0
        with self._lock:
            for (db_name, coll_name, _), (field, seconds) in list(self._ttl.items()):
                cutoff = now - datetime.timedelta(seconds=seconds)
                coll = self._client[db_name][coll_name]
                # $lte on a date matches dates only (and arrays holding an old date).
                deleted += coll.delete_many({field: {"$lte": cutoff}}).deleted_count
            if deleted and self._data_path:
                self._save(self._data_path)
        return deleted

    # Index helpers, shared by createIndexes, listIndexes and the data file.

    def index_specs(self, db_name, coll_name):
        """The collection's indexes as listIndexes reports them (_id_ first)."""
        coll = self._client[db_name][coll_name]
        specs = []
        for info in coll.list_indexes():
            spec = {"v": 2, "key": dict(info["key"]), "name": info["name"]}
            for option in INDEX_OPTIONS:
                if option in info:
                    spec[option] = info[option]
            ttl = self._ttl.get((db_name, coll_name, info["name"]))
            if ttl is not None:
                spec["expireAfterSeconds"] = ttl[1]
            specs.append(spec)
        return specs

    def create_index(self, db_name, coll_name, spec):
        """Create one index; return False if an identical one already exists."""
        key = dict(spec["key"])
        name = spec.get("name") or "_".join(f"{k}_{v}" for k, v in key.items())
        wanted = index_options(spec)
        for existing in self.index_specs(db_name, coll_name):
            same_name, same_key = existing["name"] == name, existing["key"] == key
            options = index_options(existing)
            if same_name and not same_key:
                raise CommandError(86, "IndexKeySpecsConflict", "An existing index has "
                                   f"the same name as the requested index: {name}")
            if same_key and (not same_name or options != wanted):
                if same_name or name == "_id_":
                    raise CommandError(85, "IndexOptionsConflict", "An equivalent index "
                                       f"already exists with different options: {existing['name']}")
                raise CommandError(85, "IndexOptionsConflict",
                                   f"Index already exists with a different name: {existing['name']}")
            if same_name:
                return False
        kwargs = {o: wanted[o] for o in ("unique", "sparse", "partialFilterExpression") if o in wanted}
        self._client[db_name][coll_name].create_index(list(key.items()), name=name, **kwargs)
        if "expireAfterSeconds" in wanted and len(key) == 1:  # TTL needs a single field
            self._ttl[(db_name, coll_name, name)] = (next(iter(key)), wanted["expireAfterSeconds"])
        return True

    def forget_indexes(self, db_name, coll_name=None):
        """Drop TTL entries of a dropped collection (or of every collection in db)."""
        for ttl_key in list(self._ttl):
            if ttl_key[0] == db_name and coll_name in (None, ttl_key[1]):
                del self._ttl[ttl_key]

    # The data file: a stream of BSON records, one per collection header and
    # one per document: {db, collection, indexes} then {document} ...

    def _save(self, path):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as out:
            for db_name in self._client.list_database_names():
                db = self._client[db_name]
                for coll_name in db.list_collection_names():
                    indexes = [s for s in self.index_specs(db_name, coll_name) if s["name"] != "_id_"]
                    out.write(bson.encode({"db": db_name, "collection": coll_name,
                                           "indexes": indexes}))
                    for doc in db[coll_name].find({}):
                        out.write(bson.encode({"document": doc}))
        # No fsync: the file must survive a killed process, not a power cut.
        os.replace(tmp, path)

    def _load(self, path):
        with open(path, "rb") as source:
            coll = None
            for record in bson.decode_file_iter(source):
                if "collection" in record:
                    db_name, coll_name = record["db"], record["collection"]
                    coll = self._client[db_name][coll_name]
                    for spec in record["indexes"]:
                        self.create_index(db_name, coll_name, spec)
                else:
                    coll.insert_one(record["document"])


# --- Command handlers: each takes (backend, mongomock database, command) ---

def cursor_reply(ns, docs):
    return {"cursor": {"firstBatch": list(docs), "id": Int64(0), "ns": ns}, "ok": 1}


def sort_list(sort):
    """A sort document ({a: 1, b: -1}) as mongomock's list of pairs, or None."""
    return list(sort.items()) if sort else None


def cmd_find(backend, db, cmd):
    coll = db[cmd["find"]]
    docs = coll.find(cmd.get("filter") or {}, cmd.get("projection") or None,
                     skip=int(cmd.get("skip", 0)),
                     limit=abs(int(cmd.get("limit", 0))),  # negative: one batch
                     sort=sort_list(cmd.get("sort")))
    return cursor_reply(f"{db.name}.{coll.name}", docs)


def duplicate_key_error(backend, db, coll_name, index, doc=None):
    """A writeErrors entry for code 11000, naming the index when it can be found."""
    error = {"index": index, "code": 11000,
             "errmsg": f"E11000 duplicate key error collection: {db.name}.{coll_name}"}
    if doc is None:
        return error
    for spec in backend.index_specs(db.name, coll_name):
        if spec["name"] != "_id_" and not spec.get("unique"):
            continue
        key_value = {field: doc.get(field) for field in spec["key"]}
        if db[coll_name].find_one(key_value, {"_id": 1}) is not None:
            error["errmsg"] += f" index: {spec['name']} dup key: {key_value!r}"
            error["keyPattern"] = spec["key"]
            error["keyValue"] = key_value
            break
    return error


def write_error(index, exc):
    return {"index": index, "code": getattr(exc, "code", None) or 2, "errmsg": str(exc)}


def cmd_insert(backend, db, cmd):
    coll, ordered = db[cmd["insert"]], cmd.get("ordered", True)
    n, errors = 0, []
    for i, doc in enumerate(cmd["documents"]):
        try:
            coll.insert_one(doc)
            n += 1
        except mongomock.DuplicateKeyError:
            errors.append(duplicate_key_error(backend, db, coll.name, i, doc))
        except Exception as exc:  # e.g. a top-level "$" field name
            errors.append(write_error(i, exc))
        if errors and ordered:
            break
    reply = {"n": n}
    if errors:
        reply["writeErrors"] = errors
    return reply


def is_operator_update(update):
    """MongoDB decides by the first key: "$set" etc. means operators, else replacement."""
    return bool(update) and next(iter(update)).startswith("$")


def apply_update(coll, query, update, upsert, multi):
    """One update statement; return mongomock's raw result {n, nModified, upserted}."""
    if isinstance(update, list):
        raise CommandError(238, "NotImplemented", "pipeline-style updates are not supported")
    if not is_operator_update(update):
        if multi:
            raise CommandError(9, "FailedToParse",
                               "multi update is not supported for replacement-style update")
        return coll.replace_one(query, update, upsert=upsert).raw_result
    if multi:
        return coll.update_many(query, update, upsert=upsert).raw_result
    return coll.update_one(query, update, upsert=upsert).raw_result


def cmd_update(backend, db, cmd):
    coll, ordered = db[cmd["update"]], cmd.get("ordered", True)
    n = modified = 0
    upserted, errors = [], []
    for i, stmt in enumerate(cmd["updates"]):
        try:
            result = apply_update(coll, stmt.get("q") or {}, stmt["u"],
                                  bool(stmt.get("upsert")), bool(stmt.get("multi")))
        except CommandError as exc:
            errors.append({"index": i, "code": exc.code, "errmsg": exc.errmsg})
        except mongomock.DuplicateKeyError:
            errors.append(duplicate_key_error(backend, db, coll.name, i))
        except Exception as exc:  # e.g. changing the immutable _id
            errors.append(write_error(i, exc))
        else:
            n += result["n"]
            modified += result["nModified"]
            if result.get("upserted") is not None:
                upserted.append({"index": i, "_id": result["upserted"]})
        if errors and ordered:
            break
    reply = {"n": n, "nModified": modified}
    if upserted:
        reply["upserted"] = upserted
    if errors:
        reply["writeErrors"] = errors
    return reply


def cmd_delete(backend, db, cmd):
    coll, n = db[cmd["delete"]], 0
    for stmt in cmd["deletes"]:
        if stmt.get("limit", 0) == 1:
            n += coll.delete_one(stmt["q"]).deleted_count
        else:
            n += coll.delete_many(stmt["q"]).deleted_count
    return {"n": n}


def cmd_find_and_modify(backend, db, cmd):
    coll = db[cmd.get("findAndModify", cmd.get("findandmodify"))]
    query, update = cmd.get("query") or {}, cmd.get("update")
    fields, upsert = cmd.get("fields") or None, bool(cmd.get("upsert"))
    if bool(cmd.get("remove")) == (update is not None):
        raise CommandError(9, "FailedToParse", "Either an update or remove=true must be specified")
    found = list(coll.find(query, {"_id": 1}, sort=sort_list(cmd.get("sort")), limit=1))
    if found:
        by_id = {"_id": found[0]["_id"]}
        value = coll.find_one(by_id, fields)  # the document before the change
        if cmd.get("remove"):
            coll.delete_one(by_id)
            return {"lastErrorObject": {"n": 1}, "value": value}
        apply_update(coll, by_id, update, upsert=False, multi=False)
        if cmd.get("new"):
            value = coll.find_one(by_id, fields)
        return {"lastErrorObject": {"n": 1, "updatedExisting": True}, "value": value}
    if update is not None and upsert:
        upserted_id = apply_update(coll, query, update, upsert=True, multi=False)["upserted"]
        value = coll.find_one({"_id": upserted_id}, fields) if cmd.get("new") else None
        return {"lastErrorObject": {"n": 1, "updatedExisting": False, "upserted": upserted_id},
                "value": value}
    last_error = {"n": 0} if cmd.get("remove") else {"n": 0, "updatedExisting": False}
    return {"lastErrorObject": last_error, "value": None}


def cmd_count(backend, db, cmd):
    kwargs = {k: int(cmd[k]) for k in ("skip", "limit") if cmd.get(k)}
    return {"n": db[cmd["count"]].count_documents(cmd.get("query") or {}, **kwargs)}


def cmd_distinct(backend, db, cmd):
    return {"values": db[cmd["distinct"]].distinct(cmd["key"], cmd.get("query") or None)}


def cmd_aggregate(backend, db, cmd):
    if not isinstance(cmd["aggregate"], str):
        raise CommandError(238, "NotImplemented", "database-level aggregate is not supported")
    coll = db[cmd["aggregate"]]
    return cursor_reply(f"{db.name}.{coll.name}", coll.aggregate(list(cmd["pipeline"])))


def cmd_create_indexes(backend, db, cmd):
    coll_name = cmd["createIndexes"]
    existed = coll_name in db.list_collection_names()
    before = len(backend.index_specs(db.name, coll_name)) if existed else 0
    created = [backend.create_index(db.name, coll_name, spec) for spec in cmd["indexes"]]
    reply = {"numIndexesBefore": max(before, 1),
             "numIndexesAfter": len(backend.index_specs(db.name, coll_name)),
             "createdCollectionAutomatically": not existed}
    if not any(created):
        reply["note"] = "all indexes already exist"
    return reply


def cmd_list_indexes(backend, db, cmd):
    coll_name = cmd["listIndexes"]
    if coll_name not in db.list_collection_names():
        raise CommandError(26, "NamespaceNotFound", f"ns does not exist: {db.name}.{coll_name}")
    return cursor_reply(f"{db.name}.{coll_name}", backend.index_specs(db.name, coll_name))


def cmd_list_collections(backend, db, cmd):
    docs = []
    for name in sorted(db.list_collection_names()):
        doc = {"name": name, "type": "collection", "options": {},
               "info": {"readOnly": False},
               "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}
        if filter_applies(cmd.get("filter") or {}, doc):
            docs.append({"name": name, "type": "collection"} if cmd.get("nameOnly") else doc)
    return cursor_reply(f"{db.name}.$cmd.listCollections", docs)


def cmd_drop(backend, db, cmd):
    coll_name = cmd["drop"]
    was = len(backend.index_specs(db.name, coll_name)) if coll_name in db.list_collection_names() else 0
    db.drop_collection(coll_name)
    backend.forget_indexes(db.name, coll_name)
    return {"nIndexesWas": was, "ns": f"{db.name}.{coll_name}"}


def cmd_drop_database(backend, db, cmd):
    db.client.drop_database(db.name)
    backend.forget_indexes(db.name)
    return {"dropped": db.name}


def cmd_list_databases(backend, db, cmd):
    names = sorted(db.client.list_database_names())
    if cmd.get("nameOnly"):
        return {"databases": [{"name": name} for name in names]}
    return {"databases": [{"name": name, "sizeOnDisk": 0, "empty": False} for name in names],
            "totalSize": 0}


def cmd_ping(backend, db, cmd):
    return {}


def cmd_build_info(backend, db, cmd):
    return {"version": SERVER_VERSION, "versionArray": [7, 0, 0, 0], "gitVersion": "wireserver",
            "bits": 64, "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE, "storageEngines": []}


def cmd_end_sessions(backend, db, cmd):
    return {}


def cmd_kill_cursors(backend, db, cmd):
    # No cursor ever stays open, so every id is "not found".
    return {"cursorsKilled": [], "cursorsNotFound": list(cmd.get("cursors", [])),
            "cursorsAlive": [], "cursorsUnknown": []}


def cmd_get_more(backend, db, cmd):
    raise CommandError(43, "CursorNotFound", f"cursor id {cmd['getMore']} not found")


COMMANDS = {
    "find": cmd_find, "insert": cmd_insert, "update": cmd_update, "delete": cmd_delete,
    "findAndModify": cmd_find_and_modify, "findandmodify": cmd_find_and_modify,
    "count": cmd_count, "distinct": cmd_distinct, "aggregate": cmd_aggregate,
    "createIndexes": cmd_create_indexes, "listIndexes": cmd_list_indexes,
    "listCollections": cmd_list_collections, "drop": cmd_drop,
    "dropDatabase": cmd_drop_database, "listDatabases": cmd_list_databases, "ping": cmd_ping,
    "buildInfo": cmd_build_info, "buildinfo": cmd_build_info,
    "endSessions": cmd_end_sessions, "killCursors": cmd_kill_cursors, "getMore": cmd_get_more,
}
HELLO_NAMES = {"hello", "isMaster", "ismaster"}


def hello_reply(cmd, connection_id):
    """The handshake answer of a writable standalone mongod (no topologyVersion,
    so drivers poll instead of using the streaming protocol)."""
    name = next(iter(cmd))
    reply = {"isWritablePrimary" if name == "hello" else "ismaster": True,
             "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
             "maxMessageSizeBytes": MAX_MESSAGE_SIZE,
             "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
             "localTime": utcnow(),
             "logicalSessionTimeoutMinutes": SESSION_TIMEOUT_MINUTES,
             "connectionId": connection_id,
             "minWireVersion": 0, "maxWireVersion": MAX_WIRE_VERSION,
             "readOnly": False, "ok": 1}
    if cmd.get("helloOk"):
        reply["helloOk"] = True
    return reply


# --- Wire server: mockupdb in front of the backend ---

class WireServer:
    """Listens on 127.0.0.1:port and answers every request through ``Backend``."""

    def __init__(self, backend, port=0):
        self.backend = backend
        self.fault = "off"
        self._counts, self._counts_lock = {}, threading.Lock()  # command name -> n, for testCounters
        # request_timeout only matters for mockupdb's queue, which we never use.
        self._mockup = MockupDB(port=port or None, request_timeout=int(1e6))
        self._mockup.autoresponds(self._handle)

    def start(self):
        return self._mockup.run()  # the bound port

    def stop(self):
        self._mockup.stop()

    def _handle(self, request):
        # mockupdb calls this on the connection's own thread; the reply goes
        # back on that connection only. Always True: never queue a request.
        try:
            self._answer(request)
        except OSError:
            pass  # the client went away while we replied
        return True

    def _answer(self, request):
        if not request.is_command:
            if request.opcode == 2004:  # OP_QUERY on a collection
                request.fail("OP_QUERY is no longer supported", code=5739101)
            else:
                request.hangup()  # removed legacy opcodes
            return
        cmd = request.doc
        if next(iter(cmd)) == "$query":  # mongos-style wrapping
            cmd = cmd["$query"]
        name = next(iter(cmd))
        if name == "testFault":
            request.replies(self._set_fault(cmd["testFault"]))
            return
        if name == "testCounters":
            request.replies(self._counters(cmd["testCounters"]))
            return
        if self.fault == "hang":
            return
        if self.fault == "drop":
            request.hangup()
            return
        if name in HELLO_NAMES:
            reply = hello_reply(cmd, request.client_port)
        elif not isinstance(request, OpMsg):
            reply = CommandError(352, "UnsupportedOpQueryCommand",
                                 f"Unsupported OP_QUERY command: {name}").reply()
        else:
            if name not in UNCOUNTED:
                with self._counts_lock:
                    self._counts[name] = self._counts.get(name, 0) + 1
            reply = self.backend.run(request.namespace, cmd)
        if isinstance(request, OpMsg) and request.flags & MORE_TO_COME:
            return  # w:0, the client reads no reply
        request.replies(reply)

    def _set_fault(self, mode):
        if mode not in FAULT_MODES:
            return CommandError(2, "BadValue", f"testFault must be one of {FAULT_MODES}, "
                                f"got {mode!r}").reply()
        previous, self.fault = self.fault, mode
        return {"ok": 1, "was": previous}

    def _counters(self, action):
        if action not in COUNTER_ACTIONS:
            return CommandError(2, "BadValue", f"testCounters must be one of {COUNTER_ACTIONS}, "
                                f"got {action!r}").reply()
        with self._counts_lock:
            counts = dict(self._counts)
            if action == "reset":
                self._counts.clear()
        return {"ok": 1, "counts": counts}


# --- Command line ---

def main(argv=None):
    parser = argparse.ArgumentParser(description="MongoDB wire-protocol test server (mongomock).")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1, 0 = any")
    parser.add_argument("--data", help="file that keeps the data across restarts")
    parser.add_argument("--ttl-monitor", type=float, default=DEFAULT_TTL_MONITOR,
                        help="seconds between TTL passes, 0 = never (default 60)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    backend = Backend(args.data)
    server = WireServer(backend, args.port)
    port = server.start()
    if args.ttl_monitor > 0:
        def ttl_monitor():
            while not stop.wait(args.ttl_monitor):
                backend.expire_documents()
        threading.Thread(target=ttl_monitor, daemon=True).start()
    print(f"READY {port}", flush=True)
    while not stop.wait(0.5):
        pass
    # Skip mockupdb's stop(), which waits about a second for its accept loop:
    # let the running command (and its save) finish, then let the process end.
    backend.shutdown()
    return 0


# --- Helpers for tests: raw commands, and servers as subprocesses ---

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send_command(port, command, db="admin", timeout=5.0):
    """Send one command as a bare OP_MSG (no driver, no handshake); return the reply."""
    body = struct.pack("<iB", 0, 0) + bson.encode(dict(command, **{"$db": db}))
    header = struct.pack("<iiii", 16 + len(body), 1, 0, OP_MSG)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(header + body)
        length = struct.unpack("<i", _recv_exactly(sock, 4))[0]
        message = _recv_exactly(sock, length - 4)
    # message = requestID, responseTo, opCode (12 bytes), flags (4), kind byte (1), document
    return bson.decode(message[17:])


def _recv_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


class ServerProcess:
    """A server running as a child process; stopped and killed by its PID."""

    def __init__(self, popen, port, log_path):
        self._popen = popen
        self.port = port
        self.pid = popen.pid
        self.log_path = log_path
        self.url = f"mongodb://127.0.0.1:{port}/"

    def running(self):
        return self._popen.poll() is None

    def log(self):
        """What the server wrote to stderr (and stdout, for nx-27017); gone after stop."""
        try:
            with open(self.log_path, errors="replace") as source:
                return source.read()
        except OSError:
            return ""

    def set_fault(self, mode, timeout=5.0):
        """Switch the wireserver's fault mode ("off", "hang", "drop") without a driver."""
        reply = send_command(self.port, {"testFault": mode}, timeout=timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"testFault {mode!r} failed: {reply}")

    def counters(self, reset=False, timeout=5.0):
        """Commands served since the last reset, by name ({"find": 2, ...});
        with reset=True the count starts again from zero."""
        reply = send_command(self.port, {"testCounters": "reset" if reset else "get"}, timeout=timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"testCounters failed: {reply}")
        return dict(reply["counts"])

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to timeout seconds, then SIGKILL."""
        self._signal(signal.SIGTERM)
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(timeout)
        self._close()

    def kill(self, timeout=10.0):
        """SIGKILL and reap (as an abrupt crash or outage)."""
        self._signal(signal.SIGKILL)
        self._popen.wait(timeout)
        self._close()

    def _signal(self, signum):
        if self._popen.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def _close(self):
        if self._popen.stdout:
            self._popen.stdout.close()
        try:
            os.remove(self.log_path)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def __repr__(self):
        return f"ServerProcess(pid={self.pid}, url={self.url!r})"


def _log_file(prefix):
    handle, path = tempfile.mkstemp(prefix=prefix, suffix=".log")
    return os.fdopen(handle, "wb"), path


def _startup_failed(process, what, timeout):
    process.kill()
    return RuntimeError(f"{what} did not start within {timeout}s; its log:\n{process.log()[-3000:]}")


def start_wire_server(port=None, data=None, timeout=15.0, ttl_monitor=DEFAULT_TTL_MONITOR):
    """Run ``tests/wireserver.py`` in a child process; return once it prints READY.

    port None picks a free port; data is the --data file (None = memory only);
    ttl_monitor is seconds between TTL passes (0 = never).
    """
    log, log_path = _log_file("wireserver-")
    command = [sys.executable, HERE, "--port", str(port or 0), "--ttl-monitor", str(ttl_monitor)]
    if data is not None:
        command += ["--data", os.fspath(data)]
    with log:
        popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=log)
    process = ServerProcess(popen, port or 0, log_path)
    line = _read_line(popen, timeout)
    if not line.startswith("READY "):
        raise _startup_failed(process, "wireserver", timeout)
    process.port = int(line.split()[1])
    process.url = f"mongodb://127.0.0.1:{process.port}/"
    return process


def _read_line(popen, timeout):
    """The child's first stdout line, or "" after timeout seconds or at exit."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([popen.stdout], [], [], remaining)[0]:
            return ""
        chunk = os.read(popen.stdout.fileno(), 256)
        if not chunk:
            return ""
        data += chunk
    return data.decode(errors="replace").splitlines()[0]


def nx27017_executable():
    """The nx-27017 console script of this venv, else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "nx-27017")
    if os.path.exists(beside):
        return beside
    found = shutil.which("nx-27017")
    if found is None:
        raise FileNotFoundError("nx-27017 is not installed: pip install nx-27017==0.8.1")
    return found


def start_nx27017(db_path, port=None, timeout=15.0):
    """Run nx-27017 (SQLite-backed) on db_path; return once a pymongo ping succeeds.

    nx-27017 keeps a PID file and refuses to start while the PID in it is
    alive, and its default PID file is shared (/tmp/nx_27017.pid), so each
    instance gets its own PID and log file next to db_path.
    """
    port = port or free_port()
    db_path = os.fspath(db_path)
    log, log_path = _log_file("nx27017-")
    command = [nx27017_executable(), "--db", db_path, "-p", str(port),
               "--pid-file", f"{db_path}.pid", "--log-file", f"{db_path}.log"]
    with log:
        popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    process = ServerProcess(popen, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.running():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            client = pymongo.MongoClient(process.url, serverSelectionTimeoutMS=1000,
                                         connectTimeoutMS=1000, socketTimeoutMS=2000)
            try:
                client.admin.command("ping")
                return process
            finally:
                client.close()
        except (OSError, pymongo.errors.PyMongoError):
            time.sleep(0.1)
    raise _startup_failed(process, "nx-27017", timeout)


if __name__ == "__main__":
    sys.exit(main())
