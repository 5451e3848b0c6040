"""Helpers for the tests of the app through webtest (conftest's `client` and `make_client`)."""


def login(client, name="Alice", **kwargs):
    """POST / with a JSON name, as the API's clients log in."""
    return client.post_json("/", {"name": name}, **kwargs)
