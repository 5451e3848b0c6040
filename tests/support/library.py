"""Helpers for the tests of the session library itself (a SessionInterface on mongomock, no app):
log in, and read back what was stored."""

import json

from support.basics import cookie_value


def stored(mongo):
    """(the stored document, its session text parsed) of the only session in `mongo`."""
    doc = mongo.find_one()
    return doc, json.loads(doc["session"])


def login(interface, data=None):
    """A new session holding `data` (by default a logged-in user), saved: (session, cookie)."""
    session = interface.open_session(None)
    session.update(data or {"user": {"name": "Ann", "isLoggedIn": True}})
    return session, cookie_value(interface.save_session(session))
