"""The service as a user meets it: `python service.py` in a child process,
spoken to over a real socket by a small client that keeps cookies."""

import contextlib
import http.client
import json
import os
import sys

from .child import Child

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTENING = r"listening on http://\S+:(\d+) "  # the service's startup line; the group is the port


def start_service(env=None, timeout=20):
    """`python service.py` on a free port of 127.0.0.1 (PORT=0), as a Child; env adds to or overrides these."""
    env = {"HOST": "127.0.0.1", "PORT": "0", "SESSION_SECRET": "process-secret", **(env or {})}
    return Child([sys.executable, os.path.join(ROOT, "service.py")], env=env, ready=LISTENING, timeout=timeout)


@contextlib.contextmanager
def running(env=None):
    """start_service(env) for a with-block: the service is killed at its end, whatever happened."""
    service = start_service(env)
    try:
        yield service
    finally:
        service.kill()


def user_of(child):
    """A new user (a cookie jar) of a server started as a Child on 127.0.0.1."""
    return Client("127.0.0.1", child.port)


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def set_cookies(self):
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


class Client:
    """One user: a cookie jar (name -> value) and requests over fresh connections
    (HTTPS when given an ssl.SSLContext)."""

    def __init__(self, host, port, timeout=15, context=None, source=None):
        self.host, self.port, self.timeout, self.context, self.jar = host, port, timeout, context, {}
        self.source = None if source is None else (source, 0)  # the address to connect from

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if isinstance(body, dict):
            body, headers["Content-Type"] = json.dumps(body), "application/json"
        if self.jar and "Cookie" not in headers:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if self.context is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                                    source_address=self.source)
        else:
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context,
                                                     source_address=self.source)
        try:
            connection.request(method, path, body=body, headers=headers)
            raw = connection.getresponse()
            response = Response(raw.status, raw.getheaders(), raw.read())
        finally:
            connection.close()
        for header in response.set_cookies():
            name, _, rest = header.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in header:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body=body, **kwargs)
