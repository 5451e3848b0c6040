"""The Python limit for the benchmarks: the service's routes on Bottle, without sessions.

    python bench/bare.py --threads 8     # waitress on 127.0.0.1, port 0; prints "READY <port>"

Same routes, same body parsing (service.read_name), same JSON errors, no
session layer: GET /name answers a fixed name when the request carries any
Cookie header and 404 otherwise, POST / answers the name and sets no cookie.
What the service costs beyond this app is what its sessions cost.
"""

import json
import os
import sys

import bottle

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import service  # noqa: E402  (the body parser, so only the session layer differs)


def make_app():
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
        if "HTTP_COOKIE" not in bottle.request.environ:
            bottle.abort(404, "not logged in")  # what the service answers without a session
        return {"name": "Alice"}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    import peer
    peer.serve(make_app())
