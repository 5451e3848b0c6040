"""One way to run a server as a child process, for tests and benchmarks.

    with Child([sys.executable, "service.py"], env={"PORT": "0"}, ready=r"listening on http://\\S+:(\\d+)") as c:
        ... c.port ...

The child's stdout and stderr are read as one stream of lines, by one thread
for its whole life (a chatty child never blocks on a full pipe).  It is ready
when a line matches `ready`; the regex's first group is the port it bound
(every server here binds port 0 and prints what it got: no race for a port).
stop() signals our own child by PID, never anyone else's.
"""

import os
import re
import signal
import subprocess
import threading
import time


class ChildError(RuntimeError):
    """Raised if a child did not become ready, or would not stop."""


class Child:
    def __init__(self, argv, *, env=None, ready, timeout=20, cwd=None):
        self.argv, self.lines = list(argv), []
        self.proc = subprocess.Popen(self.argv, env={**os.environ, **(env or {})}, cwd=cwd, text=True,
                                     errors="replace", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        line = self.wait_for(ready, timeout)
        if line is None:
            self.kill()
            raise ChildError(f"{self.argv[:3]} did not print {ready!r} in {timeout} s:\n{self.log()[-4000:]}")
        self.port = int(re.search(ready, line).group(1)) if re.compile(ready).groups else None

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
        self.proc.stdout.close()

    def log(self):
        return "\n".join(self.lines)

    def wait_for(self, pattern, timeout=10, start=0):
        """The first line from `start` on that matches `pattern`, or None after timeout seconds."""
        deadline, regex = time.monotonic() + timeout, re.compile(pattern)
        while True:
            found = next((line for line in self.lines[start:] if regex.search(line)), None)
            if found is not None or time.monotonic() > deadline:
                return found
            if self.proc.poll() is not None:
                self._reader.join(2)  # take the last lines, then look once more
                return next((line for line in self.lines[start:] if regex.search(line)), None)
            time.sleep(0.02)

    def running(self):
        return self.proc.poll() is None

    def send(self, signum):
        if self.proc.poll() is None:
            os.kill(self.pid, signum)

    def stop(self, signum=signal.SIGTERM, timeout=15):
        """Signal the child, wait for it, and return its exit code (SIGKILL after timeout seconds)."""
        self.send(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ChildError(f"{self.argv[:3]} (pid {self.pid}) ignored signal {signum} for {timeout} s") from None
        finally:
            self._reader.join(5)

    def kill(self):
        self.send(signal.SIGKILL)
        code = self.proc.wait(10)
        self._reader.join(5)
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.running():
            self.kill()
