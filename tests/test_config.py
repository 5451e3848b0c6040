"""Configuration from the environment: defaults, and one clear error per bad value."""


import pytest

import service
import sessions
from support.basics import run_threads


def test_defaults():
    settings = service.settings_from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 4000)
    assert settings.mongo_url is None and settings.collection == "sessions"
    assert settings.trust_proxy is None and settings.random_secret is True
    assert (settings.threads, settings.connection_limit) == (8, 1000)
    assert settings.access_log is True and settings.max_sessions == 200_000
    assert (settings.connections_per_client, settings.request_timeout, settings.login_rate_limit) == (100, 10, 60)
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
        "TRUST_PROXY": "1", "THREADS": "16", "CONNECTION_LIMIT": "5000", "ACCESS_LOG": "0",
        "SESSION_MEMORY_MAX_SESSIONS": "20"})
    assert (settings.host, settings.port, settings.mongo_url, settings.collection) == (
        "0.0.0.0", 8080, "mongodb://db/app", "web")
    assert settings.trust_proxy == "*" and settings.random_secret is False
    assert (settings.threads, settings.connection_limit, settings.access_log, settings.max_sessions) == (
        16, 5000, False, 20)
    assert settings.options == sessions.Options(
        secrets=("new", "old"), cookie_name="sid", max_age=600, absolute_timeout=3600, touch_after=0,
        cookie_secure=True)


@pytest.mark.parametrize("name, value", [
    ("SESSION_MAX_AGE", "abc"), ("SESSION_MAX_AGE", "-5"), ("SESSION_MAX_AGE", "0"), ("SESSION_MAX_AGE", "inf"),
    ("SESSION_ABSOLUTE_TIMEOUT", "nan"), ("SESSION_TOUCH_AFTER", "99999999"), ("SESSION_TOUCH_AFTER", "-1"),
    ("COOKIE_SECURE", "maybe"), ("TRUST_PROXY", "yes please"), ("PORT", "http"), ("PORT", "70000"),
    ("SESSION_COOKIE_NAME", "has space"), ("SESSION_COLLECTION", "bad$name"), ("SESSION_COLLECTION", "system.x"), ("SESSION_COLLECTION", "a..b"), ("SESSION_SECRET", "a,,b"), ("MONGO_URL", "http://not-mongo"),
    ("TRUST_PROXY", "2"), ("TRUST_PROXY", "10.0.0.300"), ("TRUST_PROXY", "proxy.example"),
    ("THREADS", "0"), ("THREADS", "257"), ("THREADS", "-1"), ("THREADS", "four"), ("THREADS", "2.5"),
    ("CONNECTION_LIMIT", "0"), ("CONNECTION_LIMIT", "many"), ("CONNECTION_LIMIT", "-100"),
    ("ACCESS_LOG", "verbose"), ("SESSION_MEMORY_MAX_SESSIONS", "-1"), ("SESSION_MEMORY_MAX_SESSIONS", "lots"),
])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(service.ConfigError) as caught:
        settings = service.settings_from_env({name: value})
        if settings.mongo_url:
            service.open_mongo_collection(settings.mongo_url, settings.collection)
    message = str(caught.value)
    assert message.startswith(name) and "\n" not in message


@pytest.mark.parametrize("value, trusted", [
    ("0", None), ("1", "*"), ("127.0.0.1", "127.0.0.1"), (" 10.9.9.9 ", "10.9.9.9"), ("::1", "::1")])
def test_trust_proxy_is_nobody_anybody_or_one_address(value, trusted):
    assert service.settings_from_env({"TRUST_PROXY": value}).trust_proxy == trusted


@pytest.mark.parametrize("name, low, high", [("THREADS", 1, 256), ("CONNECTION_LIMIT", 1, None)])
def test_threads_and_connection_limit_accept_their_range(name, low, high):
    field = name.lower()
    assert getattr(service.settings_from_env({name: str(low)}), field) == low
    if high is not None:
        assert getattr(service.settings_from_env({name: str(high)}), field) == high


def test_a_memory_cap_of_zero_means_no_cap():
    assert service.settings_from_env({"SESSION_MEMORY_MAX_SESSIONS": "0"}).max_sessions is None


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


@pytest.mark.parametrize("option, attribute", [
    ("serverSelectionTimeoutMS", "server_selection_timeout"), ("socketTimeoutMS", "socket_timeout"),
    ("connectTimeoutMS", "connect_timeout"), ("waitQueueTimeoutMS", "wait_queue_timeout")])
def test_a_step_timeout_in_the_url_is_not_outlasted_by_an_added_bound(option, attribute):
    collection = service.open_mongo_collection(f"mongodb://127.0.0.1:9/app?{option}=1000", "web")
    client = collection.database.client
    pool = client.options.pool_options
    value = getattr(client.options, attribute, None)
    if value is None:
        value = getattr(pool, attribute)
    assert value == 1.0
    # No bound of the service's own may outlast it (an added timeoutMS=5000 would).
    assert client.options.timeout is None or client.options.timeout <= 1.0
    client.close()


def test_without_mongo_url_the_store_is_in_memory_with_the_cap():
    store, kind = service.open_store(service.settings_from_env({"SESSION_MEMORY_MAX_SESSIONS": "2"}))
    assert isinstance(store, sessions.MemoryStore) and kind == "embedded in-memory"
    store.insert("a", sessions.Record("{}", 10**10))
    store.insert("b", sessions.Record("{}", 10**10 + 1))
    store.insert("c", sessions.Record("{}", 10**10 + 2))  # at the cap: "a", nearest its end, makes room
    assert len(store) == 2 and store.load("a", 0) is None and store.evicted == 1


def test_the_embedded_store_purges_expired_sessions():
    store = sessions.MemoryStore(clock=lambda: 50)  # logins purge a little too: not yet
    store.insert("old", sessions.Record("{}", 100))
    store.insert("new", sessions.Record("{}", 10_000))
    assert store.purge(5_000) == 1
    assert store.load("old", now=50) is None  # gone, not only filtered out by the read
    assert store.load("new", now=5_000)[:2] == ("{}", 10_000)


def test_the_embedded_store_serialises_calls():
    store = sessions.MemoryStore(clock=lambda: 5_000)  # the times below are 1970: keep "now" among them
    errors = []

    def hammer(n):
        try:
            for i in range(200):
                store.insert(f"{n}-{i}", sessions.Record("{}", 10_000))
                assert store.load(f"{n}-{i}", now=5_000)[:2] == ("{}", 10_000)
                assert store.compare_and_set(f"{n}-{i}", "{}", sessions.Record('{"a":1}', 10_000), now=5_000)
                store.delete(f"{n}-{i}")
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    run_threads(hammer, range(8), timeout=30)
    assert errors == [] and len(store) == 0


@pytest.mark.parametrize("value, secure", [("auto", "auto"), ("true", True), ("false", False), (" False ", False)])
def test_cookie_secure_maps_each_word_to_its_value(value, secure):
    assert service.settings_from_env({"COOKIE_SECURE": value}).options.cookie_secure == secure


@pytest.mark.parametrize("name, edge, beyond", [
    ("PORT", "65535", "65536"), ("CONNECTION_LIMIT", "100000", "100001"),
    ("SESSION_MEMORY_MAX_SESSIONS", "1000000000", "1000000001")])
def test_the_upper_edge_is_accepted_and_one_more_refused(name, edge, beyond):
    assert service.settings_from_env({name: edge})
    with pytest.raises(service.ConfigError, match=f"^{name} must be a whole number from"):
        service.settings_from_env({name: beyond})


def test_an_option_error_names_the_variable_that_set_it():
    with pytest.raises(service.ConfigError) as caught:
        service.settings_from_env({"SESSION_COOKIE_NAME": "__Host-sid"})  # needs COOKIE_SECURE=true
    assert str(caught.value).startswith("SESSION_COOKIE_NAME: cookie_name must be used with cookie_secure=True")


def test_a_collection_name_with_nul_is_refused():
    with pytest.raises(service.ConfigError, match="^SESSION_COLLECTION"):
        service.settings_from_env({"SESSION_COLLECTION": "a\0b"})


@pytest.mark.parametrize("url_options, added", [
    ({}, {"w": "majority", "timeoutMS": 5000}),
    ({"w": 1}, {"timeoutMS": 5000}),
    ({"timeoutms": 0.7, "sockettimeoutms": 0.1}, {"w": "majority"}),
    ({"sockettimeoutms": 2.0, "connecttimeoutms": 1.5}, {"w": "majority", "timeoutMS": 1500}),
    ({"waitqueuetimeoutms": 0.25}, {"w": "majority", "timeoutMS": 250}),
])
def test_the_service_adds_only_what_the_url_does_not_say(url_options, added):
    assert service.mongo_options(url_options) == added


def slot_taken(store):
    """Take one of a GuardedStore's slots without waiting: True, or False if none is free."""
    return store._slots.acquire(blocking=False)


def test_with_mongo_url_the_store_is_guarded_with_a_slot_less_than_the_threads():
    settings = service.settings_from_env({"MONGO_URL": "mongodb://127.0.0.1:9/app", "SESSION_COLLECTION": "web",
                                          "THREADS": "5"})
    store, kind = service.open_store(settings, ensure_indexes=False)
    assert kind == "mongodb" and isinstance(store, service.GuardedStore)
    assert store.store.collection.full_name == "app.web"
    try:
        acquired = [slot_taken(store) for _ in range(5)]
        assert acquired == [True, True, True, True, False]  # THREADS - 1: one thread never waits on the store
    finally:
        store.store.collection.database.client.close()


def test_port_0_is_accepted_any_free_port():
    assert service.settings_from_env({"PORT": "0"}).port == 0


def test_with_one_thread_one_store_slot():
    settings = service.settings_from_env({"MONGO_URL": "mongodb://127.0.0.1:9/app", "THREADS": "1"})
    store, _ = service.open_store(settings, ensure_indexes=False)
    try:
        assert [slot_taken(store) for _ in range(2)] == [True, False]
    finally:
        store.store.collection.database.client.close()


@pytest.mark.parametrize("value, samesite", [("lax", "lax"), ("Strict", "strict"), ("none", "none")])
def test_session_samesite_sets_the_cookies_samesite(value, samesite):
    env = {"SESSION_SAMESITE": value, "COOKIE_SECURE": "true"}  # none needs Secure
    assert service.settings_from_env(env).options.cookie_samesite == samesite


def test_session_samesite_none_without_secure_names_the_variable():
    with pytest.raises(service.ConfigError, match="^SESSION_SAMESITE: cookie_samesite must be 'none' only"):
        service.settings_from_env({"SESSION_SAMESITE": "none"})
    with pytest.raises(service.ConfigError, match="^SESSION_SAMESITE must be one of lax, strict, none"):
        service.settings_from_env({"SESSION_SAMESITE": "sometimes"})


@pytest.mark.parametrize("value, browser", [("1", True), ("0", False), ("", False)])
def test_session_browser_cookie_turns_on_browser_session_cookies(value, browser):
    assert service.settings_from_env({"SESSION_BROWSER_COOKIE": value}).options.browser_session_cookie is browser


@pytest.mark.parametrize("option", ["socketTimeoutMS=0", "connectTimeoutMS=0"])
def test_a_step_timeout_of_0_means_none_and_the_bound_stays(option):
    collection = service.open_mongo_collection(f"mongodb://127.0.0.1:9/app?{option}", "web")
    assert collection.database.client.options.timeout == 5  # pymongo reads 0 as "no limit": ours holds
    collection.database.client.close()


def test_timeout_ms_0_is_refused_every_store_call_must_be_bounded():
    with pytest.raises(service.ConfigError, match="timeoutMS=0"):
        service.open_mongo_collection("mongodb://127.0.0.1:9/app?timeoutMS=0", "web")
