"""Collections that stand in for MongoDB in the fast tests (the wire server is the real protocol),
and the driver errors a store may raise.

Each collection wraps a mongomock collection and defines MongoStore's methods on its class,
where MongoStore looks for them (sessions.COLLECTION_METHODS)."""

import pymongo.errors

import sessions


class Wrapped:
    """A mongomock collection whose every call goes through call(name, ...), and which takes
    `hint` as MongoDB documents it (mongomock has none): the named index must exist, or the
    query fails; MongoDB then uses it."""

    def __init__(self, collection):
        self.collection = collection

    @property
    def database(self):
        return self.collection.database

    def call(self, name, *args, hint=None, **kwargs):
        if hint is not None:
            keys = [index["key"] for index in self.collection.index_information().values()]
            if [tuple(pair) for pair in hint] not in [[tuple(pair) for pair in key] for key in keys]:
                raise pymongo.errors.OperationFailure(
                    "hint provided does not correspond to an existing index", code=2)
        return getattr(self.collection, name)(*args, **kwargs)

    def __getattr__(self, name):  # anything else a test asks for, unwrapped
        return getattr(self.collection, name)


def _through_call(name):
    return lambda self, *args, **kwargs: self.call(name, *args, **kwargs)


for _name in sessions.COLLECTION_METHODS:
    setattr(Wrapped, _name, _through_call(_name))


class CountingCollection(Wrapped):
    """A collection that records every call made to it, by method name."""

    def __init__(self, collection):
        super().__init__(collection)
        self.calls = []

    def call(self, name, *args, **kwargs):
        self.calls.append(name)
        return super().call(name, *args, **kwargs)

    def reads(self):
        return sum(name.startswith("find") for name in self.calls)

    def writes(self):
        return sum(name.startswith(("insert", "update", "replace")) for name in self.calls)

    def deletes(self):
        return sum(name.startswith("delete") for name in self.calls)


HintedCollection = Wrapped  # a plain mongomock collection, with MongoDB's hint rule


class DownCollection(Wrapped):
    """A store that is down: every operation fails as pymongo does when no server answers."""

    class _Database:
        def command(self, *args, **kwargs):
            raise pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:9: [Errno 111] Connection refused")

    def __init__(self):
        super().__init__(None)

    @property
    def database(self):
        return self._Database()

    def call(self, name, *args, **kwargs):
        return self.database.command()


# pymongo's errors by name, each a fresh instance per call: the first four are outages
# (GuardedStore's breaker opens), the last two fail only their own request.
STORE_ERRORS = {
    "AutoReconnect": lambda: pymongo.errors.AutoReconnect("connection reset by peer"),
    "ServerSelectionTimeoutError": lambda: pymongo.errors.ServerSelectionTimeoutError("no servers found"),
    "NetworkTimeout": lambda: pymongo.errors.NetworkTimeout("timed out"),
    "ExecutionTimeout": lambda: pymongo.errors.ExecutionTimeout("operation exceeded time limit", 50),
    "WriteConcernError": lambda: pymongo.errors.WriteConcernError("waiting for replication timed out", 64, {}),
    "OperationFailure": lambda: pymongo.errors.OperationFailure("not primary", 10107),
}
