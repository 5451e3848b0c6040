"""A minimal dict-backed stand-in for a pymongo collection, for the in-process benchmark.

It serves exactly the calls sessions.MongoStore makes (find_one, insert_one,
update_one, delete_one, delete_many, create_index) with the filters it uses:
equality on fields and $gt/$lte on dates (and find/$nin, which the
benchmark uses to empty it between batches). Documents live in a dict keyed by
_id, so a lookup costs what a dict lookup costs: what remains of a request's
time is the session layer's own work.
"""

import operator
from types import SimpleNamespace

_OPERATORS = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le,
              "$nin": lambda have, values: have not in values}


def _matches(doc, query):
    for field, want in query.items():
        have = doc.get(field)
        if isinstance(want, dict):
            if have is None or not all(_OPERATORS[op](have, value) for op, value in want.items()):
                return False
        elif have != want:
            return False
    return True


class DictCollection:
    def __init__(self):
        self.docs = {}  # _id -> document

    def _find(self, query):
        if "_id" in query and not isinstance(query["_id"], dict):
            doc = self.docs.get(query["_id"])
            return [doc] if doc is not None and _matches(doc, query) else []
        return [doc for doc in self.docs.values() if _matches(doc, query)]

    def find(self, query):
        return [dict(doc) for doc in self._find(query)]

    def find_one(self, query):
        found = self._find(query)
        return dict(found[0]) if found else None  # a driver hands back a fresh dict

    def insert_one(self, doc):
        if doc["_id"] in self.docs:
            raise KeyError(f"duplicate _id {doc['_id']!r}")
        self.docs[doc["_id"]] = dict(doc)

    def update_one(self, query, update):
        found = self._find(query)[:1]
        for doc in found:
            doc.update(update["$set"])
        return SimpleNamespace(matched_count=len(found))

    def delete_one(self, query):
        found = self._find(query)[:1]
        for doc in found:
            del self.docs[doc["_id"]]
        return SimpleNamespace(deleted_count=len(found))

    def delete_many(self, query):
        found = self._find(query)
        for doc in found:
            del self.docs[doc["_id"]]
        return SimpleNamespace(deleted_count=len(found))

    def create_index(self, *args, **kwargs):
        return "expires_1"
