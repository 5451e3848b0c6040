"""A small MongoDB stand-in for the tests: mongomock behind the real wire protocol.

How it works: no ``mongod`` runs on this machine, so the tests talk to this
server. mockupdb accepts TCP connections on 127.0.0.1 and decodes each message
(OP_MSG, or OP_QUERY for the first handshake); ``Backend`` turns the command
document into calls on a mongomock ``MongoClient`` and answers in MongoDB's
shape. pymongo 4.20 and the node driver 7.9 (connect-mongo 6) see a standalone
mongod of wire version 21 (MongoDB 7.0).

    python -m tests.support.wireserver --port PORT [--data FILE] [--ttl-monitor SECONDS]

It prints ``READY <port>`` (``--port 0``: any free port); SIGTERM or SIGINT
stops it. ``--data FILE``: after every write the whole server is written to
FILE (tmp file + ``os.replace``), and loaded from it at start. One lock
serialises every command (mongomock is not thread-safe); each connection has
its own thread and gets only its own replies.

It serves what this project's clients send and nothing more: sessions.MongoStore
(find, insert, update, delete, createIndexes, ping), connect-mongo (the same,
and aggregate for countDocuments), Flask-Session in the benchmark, the drivers
(hello/isMaster, endSessions) and the tests (drop, listIndexes, aggregate for
count_documents). Any other command answers MongoDB's ``{ok: 0, code: 59,
codeName: "CommandNotFound", errmsg: "no such command: 'x'"}`` and is named on
stderr, so a client that needs one more command fails loudly.

Two commands MongoDB does not have, always answered (use ``send_command`` or
``ServerProcess``, no driver handshake needed):
    ``{testFault: "hang"|"drop"|"off"}``  answer no later request | close the
        connection on every later request | behave normally again
    ``{testCounters: "get"|"reset"}``  ``{counts: {command: n}}`` since the last
        reset (then, for "reset", start from zero); ``UNCOUNTED`` is left out

THIS IS NOT MONGODB. Gaps that still matter:
- Every result comes in the first batch with cursor id 0; ``batchSize`` is
  ignored, there is no ``getMore``, and a reply over 48 MB breaks the protocol.
- TTL: a monitor thread deletes expired documents every ``--ttl-monitor``
  seconds (60 by default, mongod's ``ttlMonitorSleepSecs``; 0 = never).
  mongomock's own TTL handling is not used: it deletes expired documents on
  every read, which MongoDB never does, and would hide a reader that forgets
  to filter on ``expires``.
- Query and update semantics are mongomock's; unique indexes are enforced
  (code 11000), other index options only recorded; createIndexes of an
  existing name is a no-op, never an options conflict (codes 85/86).
- Write concern is ignored; w:0 commands (moreToCome, as the node driver's
  endSessions at close) are run and not answered. Not offered: transactions,
  pipeline updates, cursors, compression, TLS, auth, the streaming hello.
- No real concurrency: commands run one at a time, and mockupdb holds its own
  lock while a reply is sent. SIGTERM lets the running command finish.
"""

import argparse
import datetime
import os
import signal
import socket
import struct
import sys
import threading

import bson
import mongomock
from bson.int64 import Int64
from mockupdb import MockupDB, OpMsg
from pymongo.errors import OperationFailure

from .child import Child

MAX_WIRE_VERSION = 21  # MongoDB 7.0; pymongo 4.20 and node driver 7.9 need >= 9
DEFAULT_TTL_MONITOR = 60.0  # seconds, mongod's ttlMonitorSleepSecs
OP_MSG = 2013
MORE_TO_COME = 1 << 1  # OP_MSG flag: the client expects no reply
FAULT_MODES = ("off", "hang", "drop")
HELLO_NAMES = {"hello", "isMaster", "ismaster"}
# Not counted by testCounters: what drivers send on their own, whatever the app does.
UNCOUNTED = {*HELLO_NAMES, "ping", "endSessions", "testFault", "testCounters"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def utcnow():
    """Naive UTC, the form in which bson decodes dates."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def error(code, code_name, errmsg):
    """A failed command's reply, in MongoDB's shape."""
    return {"ok": 0, "errmsg": errmsg, "code": code, "codeName": code_name}


# --- The database: mongomock behind one lock ---

class Backend:
    """Runs command documents against a mongomock client, one at a time. TTL indexes
    are kept here, not in mongomock: (db, collection, index name) -> (field, seconds)."""

    def __init__(self, data_path=None):
        self._client, self._lock, self._ttl = mongomock.MongoClient(), threading.Lock(), {}
        self._data_path = data_path
        self.commands = {"find": self.find, "insert": self.insert, "update": self.update, "delete": self.delete,
                         "aggregate": self.aggregate, "createIndexes": self.create_indexes,
                         "listIndexes": self.list_indexes, "drop": self.drop,
                         "ping": self.nothing, "endSessions": self.nothing}
        self.writes = {self.insert, self.update, self.delete, self.create_indexes, self.drop}  # rewrite the file
        if data_path and os.path.exists(data_path):
            self._load(data_path)

    def run(self, db_name, cmd):
        """Run one command document; return the reply document (errors included)."""
        name = next(iter(cmd))
        handler = self.commands.get(name)
        if handler is None:
            print(f"wireserver: no such command: {name!r}", file=sys.stderr, flush=True)
            return error(59, "CommandNotFound", f"no such command: '{name}'")
        with self._lock:
            try:
                reply = {"ok": 1, **handler(self._client[db_name], cmd)}
            except Exception as exc:  # every failure is answered, never dropped
                reply = error(getattr(exc, "code", None) or 1, type(exc).__name__, str(exc))
            if self._data_path and handler in self.writes:
                self._save(self._data_path)
        return reply

    def shutdown(self):
        """Wait for the running command, then refuse all others until exit."""
        self._lock.acquire()  # never released: the process is ending

    def expire_documents(self):
        """One pass of the TTL monitor: delete documents whose date has passed."""
        now, deleted = utcnow(), 0
        with self._lock:
            for (db_name, coll_name, _), (field, seconds) in list(self._ttl.items()):
                cutoff = now - datetime.timedelta(seconds=seconds)
                # $lte on a date matches dates only (and arrays holding an old date).
                deleted += self._client[db_name][coll_name].delete_many({field: {"$lte": cutoff}}).deleted_count
            if deleted and self._data_path:
                self._save(self._data_path)
        return deleted

    # --- Commands: each takes (mongomock database, command) and returns the reply's fields ---

    def find(self, db, cmd):
        self._check_hint(db.name, cmd["find"], cmd.get("hint"))
        sort = cmd.get("sort")
        return cursor(db, cmd["find"], db[cmd["find"]].find(
            cmd.get("filter") or {}, cmd.get("projection") or None, skip=int(cmd.get("skip", 0)),
            limit=abs(int(cmd.get("limit", 0))), sort=list(sort.items()) if sort else None))

    def insert(self, db, cmd):
        coll = db[cmd["insert"]]
        n, errors = run_writes(cmd["documents"], cmd.get("ordered", True), lambda i, doc: coll.insert_one(doc))
        return {"n": n, **errors}

    def update(self, db, cmd):
        coll, reply, upserted = db[cmd["update"]], {"n": 0, "nModified": 0}, []

        def update_one(i, stmt):
            query, change, upsert = stmt.get("q") or {}, stmt["u"], bool(stmt.get("upsert"))
            if change and next(iter(change)).startswith("$"):  # MongoDB decides by the first key: operators
                method = coll.update_many if stmt.get("multi") else coll.update_one
                result = method(query, change, upsert=upsert).raw_result
            else:  # a replacement
                result = coll.replace_one(query, change, upsert=upsert).raw_result
            reply["n"] += result["n"]
            reply["nModified"] += result["nModified"]
            if result.get("upserted") is not None:
                upserted.append({"index": i, "_id": result["upserted"]})

        _, errors = run_writes(cmd["updates"], cmd.get("ordered", True), update_one)
        return {**reply, **({"upserted": upserted} if upserted else {}), **errors}

    def delete(self, db, cmd):
        coll = db[cmd["delete"]]
        for stmt in cmd["deletes"]:
            self._check_hint(db.name, cmd["delete"], stmt.get("hint"))
        return {"n": sum((coll.delete_one if stmt.get("limit") == 1 else coll.delete_many)(stmt["q"]).deleted_count
                         for stmt in cmd["deletes"])}

    def aggregate(self, db, cmd):
        return cursor(db, cmd["aggregate"], db[cmd["aggregate"]].aggregate(list(cmd["pipeline"])))

    def create_indexes(self, db, cmd):
        for spec in cmd["indexes"]:
            self._create_index(db.name, cmd["createIndexes"], spec)
        return {"numIndexesAfter": len(self._index_specs(db.name, cmd["createIndexes"]))}

    def list_indexes(self, db, cmd):
        return cursor(db, cmd["listIndexes"], self._index_specs(db.name, cmd["listIndexes"]))

    def drop(self, db, cmd):
        db.drop_collection(cmd["drop"])
        for key in [k for k in self._ttl if k[:2] == (db.name, cmd["drop"])]:
            del self._ttl[key]
        return {"ns": f"{db.name}.{cmd['drop']}"}

    def nothing(self, db, cmd):
        return {}

    # --- Indexes, for createIndexes, listIndexes and the data file ---

    def _index_specs(self, db_name, coll_name):
        """The collection's indexes as listIndexes reports them (_id_ first)."""
        specs = []
        for info in self._client[db_name][coll_name].list_indexes():
            spec = {"v": 2, "key": dict(info["key"]), "name": info["name"]}
            if info.get("unique"):
                spec["unique"] = True
            ttl = self._ttl.get((db_name, coll_name, info["name"]))
            specs.append({**spec, "expireAfterSeconds": ttl[1]} if ttl else spec)
        return specs

    def _check_hint(self, db_name, coll_name, hint):
        """As MongoDB does: a hint (an index's key pattern or name) must name an existing index,
        which the query then uses; mongomock has no planner, so the rest is the caller's promise."""
        if hint is None:
            return
        specs = self._index_specs(db_name, coll_name)
        if not any(hint == spec["name"] or dict(hint) == spec["key"] for spec in specs):
            raise OperationFailure("hint provided does not correspond to an existing index", code=2)

    def _create_index(self, db_name, coll_name, spec):
        """Create one index unless one of that name exists."""
        key = dict(spec["key"])
        name = spec.get("name") or "_".join(f"{k}_{v}" for k, v in key.items())
        if any(s["name"] == name for s in self._index_specs(db_name, coll_name)):
            return
        self._client[db_name][coll_name].create_index(list(key.items()), name=name, unique=bool(spec.get("unique")))
        if spec.get("expireAfterSeconds") is not None and len(key) == 1:  # TTL needs a single field
            self._ttl[(db_name, coll_name, name)] = (next(iter(key)), spec["expireAfterSeconds"])

    # --- The data file: per collection a record {db, collection, indexes}, then one {document} per document ---

    def _save(self, path):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as out:
            for db_name in self._client.list_database_names():
                for coll_name in self._client[db_name].list_collection_names():
                    indexes = [s for s in self._index_specs(db_name, coll_name) if s["name"] != "_id_"]
                    out.write(bson.encode({"db": db_name, "collection": coll_name, "indexes": indexes}))
                    for doc in self._client[db_name][coll_name].find({}):
                        out.write(bson.encode({"document": doc}))
        os.replace(tmp, path)  # no fsync: the file must survive a killed process, not a power cut

    def _load(self, path):
        with open(path, "rb") as source:
            for record in bson.decode_file_iter(source):
                if "collection" in record:
                    db_name, coll_name = record["db"], record["collection"]
                    for spec in record["indexes"]:
                        self._create_index(db_name, coll_name, spec)
                else:
                    self._client[db_name][coll_name].insert_one(record["document"])


def cursor(db, coll_name, docs):
    return {"cursor": {"firstBatch": list(docs), "id": Int64(0), "ns": f"{db.name}.{coll_name}"}}


def run_writes(statements, ordered, write):
    """write(index, statement) for each; return (how many succeeded, the reply's writeErrors part)."""
    done, errors = 0, []
    for i, statement in enumerate(statements):
        try:
            write(i, statement)
            done += 1
        except mongomock.DuplicateKeyError as exc:
            errors.append({"index": i, "code": 11000, "errmsg": f"E11000 duplicate key error: {exc}"})
        except Exception as exc:  # e.g. changing the immutable _id
            errors.append({"index": i, "code": getattr(exc, "code", None) or 2, "errmsg": str(exc)})
        if errors and ordered:
            break
    return done, {"writeErrors": errors} if errors else {}


# --- Wire server: mockupdb in front of the backend ---

class WireServer:
    """Listens on 127.0.0.1:port and answers every request through ``Backend``, or as the fault mode says."""

    def __init__(self, backend, port=0):
        self.backend, self.fault = backend, "off"
        self._counts, self._counts_lock = {}, threading.Lock()  # command name -> n, for testCounters
        # request_timeout only matters for mockupdb's queue, which we never use.
        self._mockup = MockupDB(port=port or None, request_timeout=int(1e6))
        self._mockup.autoresponds(self._handle)

    def start(self):
        return self._mockup.run()  # the bound port

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
            request.hangup()  # legacy opcodes, long gone from MongoDB
            return
        cmd = request.doc
        name = next(iter(cmd))
        if name == "testFault":
            request.replies(self._set_fault(cmd["testFault"]))
        elif name == "testCounters":
            request.replies(self._counters(cmd["testCounters"]))
        elif self.fault == "drop":
            request.hangup()
        elif self.fault == "hang":
            pass
        elif name in HELLO_NAMES:
            request.replies(hello_reply(cmd, request.client_port))
        else:
            if name not in UNCOUNTED:
                with self._counts_lock:
                    self._counts[name] = self._counts.get(name, 0) + 1
            reply = self.backend.run(request.namespace, cmd)
            if not (isinstance(request, OpMsg) and request.flags & MORE_TO_COME):  # w:0: the client reads none
                request.replies(reply)

    def _set_fault(self, mode):
        if mode not in FAULT_MODES:
            return error(2, "BadValue", f"testFault must be one of {FAULT_MODES}, got {mode!r}")
        previous, self.fault = self.fault, mode
        return {"ok": 1, "was": previous}

    def _counters(self, action):
        if action not in ("get", "reset"):
            return error(2, "BadValue", f"testCounters must be 'get' or 'reset', got {action!r}")
        with self._counts_lock:
            counts = dict(self._counts)
            if action == "reset":
                self._counts.clear()
        return {"ok": 1, "counts": counts}


def hello_reply(cmd, connection_id):
    """The handshake answer of a writable standalone mongod (no topologyVersion,
    so drivers poll instead of using the streaming protocol)."""
    return {"isWritablePrimary" if next(iter(cmd)) == "hello" else "ismaster": True,
            **({"helloOk": True} if cmd.get("helloOk") else {}), "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000, "localTime": utcnow(),
            "logicalSessionTimeoutMinutes": 30, "connectionId": connection_id, "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION, "readOnly": False, "ok": 1}


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
    port = WireServer(backend, args.port).start()
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


# --- For tests: raw commands, and the server as a child process ---

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (prefer PORT=0 where a server can print its port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send_command(port, command, db="admin", timeout=5.0):
    """Send one command as a bare OP_MSG (no driver, no handshake); return the reply."""
    body = struct.pack("<iB", 0, 0) + bson.encode(dict(command, **{"$db": db}))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack("<iiii", 16 + len(body), 1, 0, OP_MSG) + body)
        with sock.makefile("rb") as replies:
            length = struct.unpack("<i", replies.read(4))[0]
            message = replies.read(length - 4)
    # message = requestID, responseTo, opCode (12 bytes), flags (4), kind byte (1), document
    return bson.decode(message[17:])


class ServerProcess(Child):
    """``tests/support/wireserver.py`` as a Child (ready at ``READY <port>``), with its url and the two test commands."""

    def __init__(self, port=0, data=None, ttl_monitor=DEFAULT_TTL_MONITOR, timeout=15.0):
        argv = [sys.executable, "-m", "tests.support.wireserver", "--port", str(port or 0),
                "--ttl-monitor", str(ttl_monitor)]
        super().__init__(argv + (["--data", os.fspath(data)] if data is not None else []),
                         ready=r"^READY (\d+)$", timeout=timeout, cwd=ROOT)
        self.url = f"mongodb://127.0.0.1:{self.port}/"

    def command(self, command, timeout=5.0):
        reply = send_command(self.port, command, timeout=timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"{command} failed: {reply}")
        return reply

    def set_fault(self, mode, timeout=5.0):
        """Switch the fault mode ("off", "hang", "drop") without a driver."""
        self.command({"testFault": mode}, timeout)

    def counters(self, reset=False, timeout=5.0):
        """Commands served since the last reset, by name ({"find": 2, ...}); reset=True starts again from zero."""
        return dict(self.command({"testCounters": "reset" if reset else "get"}, timeout)["counts"])


def start_wire_server(port=None, data=None, timeout=15.0, ttl_monitor=DEFAULT_TTL_MONITOR):
    """Run this server as a child process; port None = any free one, data = the --data file,
    ttl_monitor = seconds between TTL passes (0 = never)."""
    return ServerProcess(port, data, ttl_monitor, timeout)


if __name__ == "__main__":
    sys.exit(main())
