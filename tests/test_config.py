"""Configuration from the environment: defaults, and one clear error per bad value."""

import pytest

import service
import sessions
from conftest import run_threads


def test_defaults():
    settings = service.settings_from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 4000)
    assert settings.mongo_url is None and settings.collection == "sessions"
    assert settings.trust_proxy is False and settings.random_secret is True
    options = settings.options
    assert options.cookie_name == "example.sid"
    assert (options.max_age, options.absolute_timeout, options.touch_after) == (25200, 86400, 2520)
    assert options.cookie_secure == "auto"
    assert len(options.secrets) == 1 and len(options.secrets[0]) >= 32


def test_the_random_secret_differs_per_process_start():
    assert service.settings_from_env({}).options.secrets != service.settings_from_env({}).options.secrets


def test_every_variable_is_read():
    settings = service.settings_from_env({
        "HOST": "0.0.0.0", "PORT": "8080", "MONGO_URL": "mongodb://db/app", "SESSION_COLLECTION": "web",
        "SESSION_SECRET": "new, old", "SESSION_COOKIE_NAME": "sid", "SESSION_MAX_AGE": "600",
        "SESSION_ABSOLUTE_TIMEOUT": "3600", "SESSION_TOUCH_AFTER": "0", "COOKIE_SECURE": "TRUE",
        "TRUST_PROXY": "1"})
    assert (settings.host, settings.port, settings.mongo_url, settings.collection) == (
        "0.0.0.0", 8080, "mongodb://db/app", "web")
    assert settings.trust_proxy is True and settings.random_secret is False
    assert settings.options == sessions.Options(
        secrets=("new", "old"), cookie_name="sid", max_age=600, absolute_timeout=3600, touch_after=0,
        cookie_secure=True)


@pytest.mark.parametrize("name, value", [
    ("SESSION_MAX_AGE", "abc"), ("SESSION_MAX_AGE", "-5"), ("SESSION_MAX_AGE", "0"), ("SESSION_MAX_AGE", "inf"),
    ("SESSION_ABSOLUTE_TIMEOUT", "nan"), ("SESSION_TOUCH_AFTER", "99999999"), ("SESSION_TOUCH_AFTER", "-1"),
    ("COOKIE_SECURE", "maybe"), ("TRUST_PROXY", "yes please"), ("PORT", "http"), ("PORT", "70000"),
    ("SESSION_COOKIE_NAME", "has space"), ("SESSION_COLLECTION", "bad$name"), ("SESSION_COLLECTION", "system.x"), ("SESSION_COLLECTION", "a..b"), ("SESSION_SECRET", "a,,b"), ("MONGO_URL", "http://not-mongo"),
])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(service.ConfigError) as caught:
        settings = service.settings_from_env({name: value})
        if settings.mongo_url:
            service.open_mongo_collection(settings.mongo_url, settings.collection)
    message = str(caught.value)
    assert message.startswith(name) and "\n" not in message


def test_a_bad_secret_list_does_not_echo_the_secrets():
    with pytest.raises(service.ConfigError) as caught:
        service.settings_from_env({"SESSION_SECRET": "hunter2,,"})
    assert "hunter2" not in str(caught.value)


def test_mongo_url_options_win_over_the_defaults():
    collection = service.open_mongo_collection(
        "mongodb://127.0.0.1:9/app?timeoutMS=1500&w=1&serverSelectionTimeoutMS=700", "web")
    client = collection.database.client
    assert (collection.database.name, collection.name) == ("app", "web")
    assert client.options.timeout == 1.5
    assert client.options.server_selection_timeout == 0.7
    assert client.write_concern.document == {"w": 1}
    client.close()


def test_mongo_defaults_majority_writes_and_a_five_second_bound():
    collection = service.open_mongo_collection("mongodb://127.0.0.1:9", "sessions")
    client = collection.database.client
    assert collection.database.name == "sessions"  # no database in the URL
    assert client.write_concern.document == {"w": "majority"}
    assert client.options.timeout == 5
    assert client.options.retry_writes and client.options.retry_reads
    client.close()


def test_the_embedded_store_purges_expired_sessions():
    store = sessions.MongoStore(service.open_embedded_collection("sessions"))
    store.insert("old", "{}", expires=100)
    store.insert("new", "{}", expires=10_000)

    class OneSweep:  # stop.wait() says "not stopped" once, then "stopped"
        waits = iter([False, True])

        def wait(self, seconds):
            assert seconds == service.PURGE_EVERY
            return next(self.waits)

    service.purge_periodically(store, OneSweep(), clock=lambda: 5_000)
    assert [doc["_id"] for doc in store.collection.find()] == ["new"]


def test_the_embedded_collection_serialises_calls():
    collection = service.open_embedded_collection("sessions")
    errors = []

    def hammer(n):
        try:
            for i in range(200):
                collection.insert_one({"_id": f"{n}-{i}"})
                collection.find_one({"_id": f"{n}-{i}"})
                collection.delete_one({"_id": f"{n}-{i}"})
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    run_threads(hammer, range(8), timeout=30)
    assert errors == [] and collection.count_documents({}) == 0


def test_the_embedded_store_looks_sessions_up_by_id_not_by_scanning(monkeypatch):
    import mongomock.filtering
    checked = []

    def counting(query, document, *args, **kwargs):
        checked.append(document["_id"])
        return real(query, document, *args, **kwargs)
    real = mongomock.filtering.filter_applies
    monkeypatch.setattr(mongomock.filtering, "filter_applies", counting)
    store = sessions.MongoStore(service.open_embedded_collection("sessions"))
    for n in range(500):
        store.insert(f"id-{n}", "{}", expires=10_000)
    checked.clear()
    assert store.load("id-7", now=5_000)["_id"] == "id-7"
    assert store.load("id-7", now=20_000) is None  # expired: the filter still applies
    assert store.replace("id-9", "{}", '{"a":1}', expires=10_000) is True
    assert store.replace("id-9", "{}", '{"a":2}', expires=10_000) is False  # compare-and-set
    store.delete("id-3")
    assert checked == ["id-7", "id-7", "id-9", "id-9", "id-3"]  # one document looked at per call
    assert store.load("id-3", now=5_000) is None
