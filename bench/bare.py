"""Hardened bare: the service's routes on Bottle without sessions, served as the service is.

    python -m bench.bare      # HOST, PORT, THREADS, ACCESS_LOG as for service.py; prints its "listening on" line

The yardstick for the session layer.  The same routes, body parser (service.read_name) and JSON
errors, and the same promises, because service.main() serves it with only make_app swapped:
the same waitress settings, outermost()'s three headers (nosniff, no-store, Vary: Cookie) and
the same access line.  No session: GET /name answers a fixed name when the Cookie header names
a session cookie (unchecked) and 404 otherwise; POST / answers the name and sets no cookie.
What the service costs beyond this is what its sessions cost.
"""

import json
import sys

import bottle

import service
from bench.traffic import COOKIE


def make_app(*ignored):  # what service.make_app is given
    app = bottle.Bottle()

    def json_error(error):
        bottle.response.content_type = "application/json"
        return json.dumps({"error": error.body})
    app.default_error_handler = json_error

    @app.post("/")
    def login():
        return {"name": service.read_name(bottle.request.environ)}

    @app.post("/logout")
    def logout():
        return {"loggedOut": True}

    @app.get("/name")
    def name():
        if COOKIE + "=" not in bottle.request.environ.get("HTTP_COOKIE", ""):
            bottle.abort(404, "not logged in")  # what the service answers without a session
        return {"name": "Alice"}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def main():
    service.make_app = make_app  # the one difference from `python service.py`
    return service.main()


if __name__ == "__main__":
    sys.exit(main())
