"""The bench's MongoDB stand-in: tests/support/wireserver.py, with lookups by id that do not scan.

    python -m bench.wire --port 0 --ttl-monitor 0     # as python -m tests.support.wireserver

mongomock answers every query by testing every document: 16 ms a find_one at 10,000 sessions,
where MongoDB answers from an index.  The bench stores that many, so here a query with a plain
string `_id` (the service, the limit app, connect-mongo), or `id` (Flask-Session), reads that
one document (mongomock's internals, 4.x: this file is the one place that touches them).
No TTL monitor: it would scan every document once a minute.
"""

import os
import sys

from tests.support.child import Child

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start():
    """This server as a Child on a free port, with its .url."""
    child = Child([sys.executable, "-m", "bench.wire", "--port", "0", "--ttl-monitor", "0"],
                  ready=r"^READY (\d+)$", timeout=15, cwd=ROOT)
    child.url = f"mongodb://127.0.0.1:{child.port}/"
    return child


def look_up_by_id():
    from mongomock.collection import Collection
    from mongomock.filtering import filter_applies
    from mongomock.store import CollectionStore
    scan, put, remove = Collection._iter_documents, CollectionStore.__setitem__, CollectionStore.__delitem__

    def setitem(store, key, doc):  # Flask-Session's `id` -> the document's _id
        put(store, key, doc)
        if isinstance(doc.get("id"), str):
            store.__dict__.setdefault("by_id", {})[doc["id"]] = key

    def delitem(store, key):
        doc = store._documents.get(key) or {}
        remove(store, key)
        store.__dict__.get("by_id", {}).pop(doc.get("id"), None)

    def iter_documents(collection, query):
        store = collection._store
        if isinstance(query.get("_id"), str):
            key = query["_id"]
        elif isinstance(query.get("id"), str):
            key = store.__dict__.get("by_id", {}).get(query["id"])
        else:
            return scan(collection, query)
        doc = store._documents.get(key)
        return iter([doc] if doc is not None and filter_applies(query, doc) else [])
    CollectionStore.__setitem__, CollectionStore.__delitem__ = setitem, delitem
    Collection._iter_documents = iter_documents


if __name__ == "__main__":
    look_up_by_id()
    from tests.support import wireserver
    sys.exit(wireserver.main())
