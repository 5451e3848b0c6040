"""A comparison peer: the seed's routes on Flask + Flask-Session (MongoDB backend), on waitress.

    MONGO_URL=mongodb://127.0.0.1:<port>/flask python -m bench.flask_peer   # prints "READY <port>"

Flask-Session's defaults except a signed cookie (SESSION_USE_SIGNER, as express-session and
this project sign theirs): the session id in the cookie ``session``, one document {id, val
(msgpack), expiration} per session in the URL's database, collection "sessions", rewritten
on every request (SESSION_REFRESH_EACH_REQUEST).  Login regenerates the id, as the service
does.  Served by waitress with THREADS threads (default 8, the service's), like the service,
so only the framework and the session layer differ.
"""

import logging
import os

import flask
import flask_session
import pymongo
from waitress.server import create_server

MAX_NAME = 100  # characters, as in service.py


def make_app(mongo_url, secret="bench-secret"):
    app = flask.Flask(__name__)
    database = pymongo.MongoClient(mongo_url).get_default_database()
    database["sessions"].create_index("id")  # Flask-Session looks sessions up by "id": at scale, index it
    app.config.update(SECRET_KEY=secret, SESSION_TYPE="mongodb", SESSION_USE_SIGNER=True,
                      SESSION_MONGODB=database.client, SESSION_MONGODB_DB=database.name,
                      SESSION_MONGODB_COLLECT="sessions")
    flask_session.Session(app)

    @app.post("/")
    def login():
        body = flask.request.get_json(silent=True)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
            return {"error": f"name must be a string of 1 to {MAX_NAME} characters"}, 400
        app.session_interface.regenerate(flask.session)  # a new id at login, like the service
        flask.session["user"] = {"name": name.strip(), "isLoggedIn": True}
        return {"name": name.strip()}

    @app.post("/logout")
    def logout():
        flask.session.clear()  # empty and modified: Flask-Session deletes it and expires the cookie
        return {"loggedOut": True}

    @app.get("/name")
    def name():
        user = flask.session.get("user")
        if not isinstance(user, dict) or not user.get("isLoggedIn"):
            return {"error": "not logged in"}, 404
        return {"name": user["name"]}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    # As the service does: no "Task queue depth" line (a write) per request that waits for a thread.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    server = create_server(make_app(os.environ["MONGO_URL"]), host="127.0.0.1", port=0,
                           threads=int(os.environ.get("THREADS", "8")))
    print(f"READY {server.effective_port}", flush=True)
    server.run()
