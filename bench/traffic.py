"""The traffic every benchmark sends: a claim about what the service's users do.

- logged-in read: GET /name with the cookie of one of SESSIONS sessions, picked at random each time;
- anonymous read: GET /name with no session cookie (a 404 everywhere);
- login: POST / with {"name": "User <n>"} as JSON, a new name each time, no session cookie.

Every request also carries an unrelated cookie that changes (_ga=GA1.2.<n>, as an analytics
script sets), so no two Cookie headers are alike.  The sessions are made by each target's own
login (fill() in process, login_over_http() over a socket), so they hold what it stores.
"""

import http.client
import io
import json
import random
import secrets
import sys
import threading

SESSIONS = 10_000  # distinct sessions the logged-in reads are spread over
SECRET = "bench-secret-long-enough-for-no-warning-0123"
COOKIE = "example.sid"
KINDS = ("logged-in read", "anonymous read", "login")


def login_body(n):
    return json.dumps({"name": f"User {n:06d}"}).encode()


def requests(kind, cookies, seed=1):
    """An endless, repeatable stream of (method, path, headers, body) of one kind."""
    rng = random.Random(seed)
    for n in range(1, 10**9):
        cookie = f"_ga=GA1.2.{n}"
        if kind == "logged-in read":
            cookie += "; " + rng.choice(cookies)
        if kind == "login":
            yield "POST", "/", {"Cookie": cookie, "Content-Type": "application/json"}, login_body(n)
        else:
            yield "GET", "/name", {"Cookie": cookie}, None


def fake_cookies(n):
    """Session cookies of the service's shape and length, for a yardstick that checks none."""
    return [f"{COOKIE}=s%3A{secrets.token_urlsafe(24)}.{secrets.token_urlsafe(32)[:43]}" for _ in range(n)]


def wsgi(app, method, path, cookie=None, body=None):
    """Call a WSGI app in this process as waitress would; (status code, response headers)."""
    environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body or b""), "wsgi.errors": sys.stderr,
               "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True,
               "wsgi.multiprocess": False, "wsgi.run_once": False}
    if body is not None:
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)))
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    answer = []
    b"".join(app(environ, lambda status, headers, exc_info=None: answer.extend([int(status[:3]), headers])))
    return answer[0], answer[1]


def fill(app, n):
    """n logins through a WSGI app, in this process; the cookie pairs ('name=value') they set."""
    cookies = []
    for i in range(n):
        _, headers = wsgi(app, "POST", "/", body=login_body(i))
        cookies += [v.split(";")[0] for k, v in headers if k.lower() == "set-cookie"]
    if len(cookies) != n:
        raise RuntimeError(f"{n} logins set {len(cookies)} cookies")
    return cookies


def login_over_http(port, n, connections=8):
    """n logins over `connections` keep-alive connections; the cookie pairs they set."""
    cookies, failed = [], []

    def logins(share):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for i in share:
                conn.request("POST", "/", login_body(i), {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                cookie = response.getheader("Set-Cookie")
                if response.status != 200 or not cookie:
                    failed.append(response.status)
                    return
                cookies.append(cookie.split(";")[0])
        finally:
            conn.close()
    workers = [threading.Thread(target=logins, args=(range(i, n, connections),)) for i in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failed or len(cookies) != n:
        raise RuntimeError(f"logins on port {port}: {len(cookies)} of {n} set a cookie; answers {failed[:3]}")
    return cookies
