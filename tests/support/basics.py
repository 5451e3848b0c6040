"""Small things the tests share: the secret, a fixed "now", a clock to step, threads, skipping."""

import os
import threading
import time

import pytest

SECRET = "test-secret"
T0 = 4_102_444_800.0  # 2100-01-01T00:00:00Z: a fixed "now", later than any real one (cookie jars use real time)


class Clock:
    """Time as a parameter: tests step it instead of sleeping."""

    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class Ticks:
    """A clock that answers the given times in turn."""

    def __init__(self, *times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def cookie_value(set_cookie):
    """'name=value; Path=/; ...' -> 'name=value', the part a browser sends back."""
    return set_cookie.split(";")[0]


def skip_unless(reason):
    """Skip when a tool is missing (reason is not None) - except under CI,
    which installs every tool, so there a missing one is a failure."""
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def run_threads(target, arguments, timeout=60):
    """Run target(argument) in one thread per argument and wait for all (bounded)."""
    threads = [threading.Thread(target=target, args=(a,)) for a in arguments]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running after the timeout"
