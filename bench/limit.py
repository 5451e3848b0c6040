"""The stack's own limit on the wire: one pymongo call per request, served as the service is.

    MONGO_URL=mongodb://127.0.0.1:<port>/svc python -m bench.limit   # prints its "listening on" line

GET /name takes the session id from the cookie (express-session's ``s%3A<id>.<signature>``; the
signature is not checked), sends one find_one({"_id": sid}) to the default database's "sessions"
collection, and answers 200 if a document came back; 404 without a cookie or a document.
POST / parses the name as the service does (service.read_name) and sends one insert_one of a
document shaped like the service's (a new id, the session JSON, the expiry); no cookie.  Its
MongoClient is made as the service makes its own (service.open_mongo_collection: w=majority and
a timeoutMS that bounds every call): the same promises about the store.  No signing, no session
object, no expiry check.  Like bench/bare.py it runs under service.main() with make_app swapped
(the service itself keeps no store: MONGO_URL is this app's), so it has the service's headers
and access line.  The service on the same wire server cannot beat it; its ratio to this app is
what its own session layer costs.
"""

import datetime
import json
import os
import secrets
import sys
import urllib.parse

import bottle

import service
from bench.traffic import COOKIE


def session_id(cookie_header):
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            value = urllib.parse.unquote(value)
            return value[2:].rpartition(".")[0] if value.startswith("s:") else value
    return None


def make_app(collection):
    app = bottle.Bottle()

    def json_error(error):  # as bare.py and the service answer errors
        bottle.response.content_type = "application/json"
        return json.dumps({"error": error.body})
    app.default_error_handler = json_error

    @app.get("/name")
    def name():
        sid = session_id(bottle.request.environ.get("HTTP_COOKIE", ""))
        if not sid or collection.find_one({"_id": sid}) is None:
            bottle.abort(404, "not logged in")
        return {"name": "Alice"}

    @app.post("/")
    def login():
        name = service.read_name(bottle.request.environ)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=7)
        collection.insert_one({"_id": secrets.token_urlsafe(24), "expires": expires,
                               "session": json.dumps({"name": name})})
        return {"name": name}

    return app


def main():
    env = dict(os.environ)
    sessions = service.open_mongo_collection(env.pop("MONGO_URL"), "sessions")
    service.make_app = lambda *ignored: make_app(sessions)
    return service.main(env)


if __name__ == "__main__":
    sys.exit(main())
