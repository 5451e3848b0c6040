"""The service as a user meets it: `python service.py` in a child process,
spoken to over a real socket by a small client that keeps cookies."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from child import Child
from wireserver import free_port  # noqa: F401  (one helper for every test that needs a port)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTENING = r"listening on http://\S+:(\d+) "  # the service's startup line; the group is the port


def start_service(env=None, timeout=20):
    """`python service.py` on a free port of 127.0.0.1 (PORT=0), as a Child; env adds to or overrides these."""
    env = {"HOST": "127.0.0.1", "PORT": "0", "SESSION_SECRET": "process-secret", **(env or {})}
    return Child([sys.executable, os.path.join(ROOT, "service.py")], env=env, ready=LISTENING, timeout=timeout)


class ServiceProcess:
    """`python service.py` on 127.0.0.1; stderr is collected line by line."""

    def __init__(self, env=None, port=0, timeout=20):
        # PORT=0: the service binds a free port itself and logs it (no race with another process).
        full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "SESSION_SECRET": "process-secret"}
        full_env.update(env or {})
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "service.py")], env=full_env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.pid, self.lines = self.proc.pid, []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        if not self.wait_for_line("listening on", timeout):
            self.kill()
            raise RuntimeError("service did not start:\n" + self.log())
        listening = next(line for line in self.lines if "listening on" in line)
        self.port = int(re.search(r"listening on http://[^ ]+:(\d+) ", listening).group(1))

    def _collect(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def log(self):
        return "\n".join(self.lines)

    def wait_for_line(self, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the reader thread take the last lines
                return any(text in line for line in self.lines)
            time.sleep(0.02)
        return False

    def client(self):
        return Client("127.0.0.1", self.port)

    def stop(self, signum=signal.SIGTERM, timeout=15):
        """Signal our own child by PID and wait for it; returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.pid, signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self._close()

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    def _close(self):
        if self.proc.returncode is not None:
            self._reader.join(5)  # the pipe is at its end once the process is gone
            self.proc.stderr.close()


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def set_cookies(self):
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


class Client:
    """One user: a cookie jar (name -> value) and requests over fresh connections."""

    def __init__(self, host, port, timeout=15):
        self.host, self.port, self.timeout, self.jar = host, port, timeout, {}

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if isinstance(body, dict):
            body, headers["Content-Type"] = json.dumps(body), "application/json"
        if self.jar and "Cookie" not in headers:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
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
