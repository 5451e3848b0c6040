"""In-process cost: WSGI calls, no sockets, no server, no store process.

Bare Bottle (bench/bare.py) beside the service on its embedded store
(sessions.MemoryStore), on the same routes. Batches interleave the two apps;
medians. What the service costs beyond bare Bottle is its session layer.
"""

import io
import os
import sys
import time

import bare
import service
import sessions

SECRET = "bench-secret"
NAME_BODY = b'{"name": "Alice"}'
REQUESTS = {  # kind -> method, path, body, sends the logged-in cookie, status expected
    "logged-in read": ("GET", "/name", None, True, 200),
    "anonymous read": ("GET", "/name", None, False, 404),
    "login": ("POST", "/", NAME_BODY, False, 200),
}


def memory_store(**kwargs):
    """The service's embedded store."""
    return sessions.MemoryStore(**kwargs)


def service_app(store):
    """As service.main() builds it: the routes inside outermost(), whose access line goes to /dev/null here."""
    app = service.make_app(sessions.SessionInterface(store, sessions.Options(secrets=(SECRET,))))
    return service.outermost(app, access_log=open(os.devnull, "w"))


def environ(method, path, cookie=None, body=None):
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
           "wsgi.input": io.BytesIO(body or b""), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
           "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False}
    if body is not None:
        env.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)))
    if cookie:
        env["HTTP_COOKIE"] = cookie
    return env


def call(app, method, path, cookie=None, body=None):
    """Call a WSGI app as a server would; (status code, the cookie pair it set or None)."""
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = int(status[:3])
        answer["cookie"] = next((v.split(";")[0] for k, v in headers if k.lower() == "set-cookie"), None)
    b"".join(app(environ(method, path, cookie, body), start_response))
    return answer["status"], answer["cookie"]


def logged_in_cookie(app):
    status, cookie = call(app, "POST", "/", body=NAME_BODY)
    assert status == 200, f"login answered {status}"
    return cookie or "example.sid=any"  # bare Bottle sets none: any cookie means "logged in"


def per_call_us(app, kind, cookie, n):
    """Microseconds of each of n calls of one request kind (after one checked call)."""
    method, path, body, logged_in, expected = REQUESTS[kind]
    cookie = cookie if logged_in else None
    status, _ = call(app, method, path, cookie, body)
    assert status == expected, f"{kind}: {status}, expected {expected}"
    clock, times = time.perf_counter_ns, []
    for _ in range(n):
        started = clock()
        call(app, method, path, cookie, body)
        times.append((clock() - started) / 1000)
    return times


def measure(batch, reps):
    """{kind: {app label: median us per call}}, batches of `batch` calls, `reps` interleaved rounds."""
    apps = {"bare Bottle": bare.make_app(), "service, MemoryStore": service_app(memory_store())}
    cookies = {label: logged_in_cookie(app) for label, app in apps.items()}
    samples = {}
    for _ in range(reps):
        for kind in REQUESTS:
            for label, app in apps.items():
                times = per_call_us(app, kind, cookies[label], batch)
                samples.setdefault(kind, {}).setdefault(label, []).append(sorted(times)[len(times) // 2])
    return {kind: {label: sorted(v)[len(v) // 2] for label, v in by_app.items()} for kind, by_app in samples.items()}
