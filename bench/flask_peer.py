"""A comparison peer for the benchmarks: the seed's routes on Flask + Flask-Session (MongoDB backend).

    MONGO_URL=mongodb://127.0.0.1:27017/ python bench/flask_peer.py --threads 8   # prints "READY <port>"

Flask-Session's defaults except a signed cookie (SESSION_USE_SIGNER, as
express-session and this project sign theirs): the session id in the cookie
``session``, one document {id, val (msgpack), expiration} per session in
flask.sessions, rewritten on every request (SESSION_REFRESH_EACH_REQUEST).
Login regenerates the id, as this project's service does. Served by waitress,
like the service, so only the framework and the session layer differ.
"""

import os

import flask
import flask_session
import pymongo

MAX_NAME = 100  # characters, as in service.py


def make_app(mongo_url, db="flask", secret="bench-secret"):
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY=secret, SESSION_TYPE="mongodb", SESSION_USE_SIGNER=True,
                      SESSION_MONGODB=pymongo.MongoClient(mongo_url), SESSION_MONGODB_DB=db,
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
    import peer
    peer.serve(make_app(os.environ["MONGO_URL"], os.environ.get("FLASK_SESSION_DB", "flask")))
