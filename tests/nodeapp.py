"""Run the Node.js peer (tests/interop/app.js) from Python tests.

How it works: the peer is express + express-session + connect-mongo at pinned
versions (tests/interop/package.json and package-lock.json). install_node_app()
copies those three files to a scratch folder and runs `npm ci` there, so the
repository never holds node_modules. start_node_app() runs `node app.js` with
the environment the test gives it (PORT, SESSION_SECRET, MONGO_URL, ...; see
the top of app.js), waits for the line `LISTENING <port>` on its stdout, and
returns a handle whose stop() ends exactly that process, by its PID.

The helpers import nothing from pytest: a test or a benchmark calls
node_available() and skips or fails as it sees fit.
"""

import os
import shutil
import signal
import subprocess
import threading
import time

INTEROP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interop")
APP_FILES = ("package.json", "package-lock.json", "app.js")
NPM_CI_TIMEOUT = 300  # seconds; a cold `npm ci` of ~90 packages takes ~10 s


# --- Errors ---

class NodeAppError(RuntimeError):
    """Raised if the Node peer cannot be installed, started or stopped."""


# --- Availability ---

def node_available():
    """Return None if node and npm are on PATH, else the reason they are not."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found on PATH; install Node.js >= 20.8 to run the interop tests"
    return None


# --- Install ---

def install_node_app(dest_dir, timeout=NPM_CI_TIMEOUT):
    """Copy the peer into dest_dir, run `npm ci` there, and return dest_dir."""
    os.makedirs(dest_dir, exist_ok=True)
    for name in APP_FILES:
        shutil.copyfile(os.path.join(INTEROP_DIR, name), os.path.join(dest_dir, name))
    try:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=dest_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise NodeAppError(f"npm ci in {dest_dir} did not finish in {timeout} s; check that the npm registry is reachable")
    if done.returncode != 0:
        raise NodeAppError(f"npm ci in {dest_dir} failed with exit code {done.returncode}:\n{done.stderr[-4000:]}")
    return dest_dir


# --- Run ---

class NodeApp:
    """A running `node app.js`: its pid, its base url, and stop()."""

    def __init__(self, process, port, host):
        self.process = process
        self.pid = process.pid
        self.port = port
        self.url = f"http://{host}:{port}"
        self.output = []  # lines the app printed (stdout and stderr), for failure messages
        self._reader = None

    def stop(self, timeout=5):  # seconds for each of SIGTERM and SIGKILL
        """End the app: SIGTERM, then SIGKILL if it is still running after timeout."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    raise NodeAppError(f"node app (pid {self.pid}) survived SIGKILL for {timeout} s")
        if self._reader is not None:
            self._reader.join(timeout=timeout)
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def start_node_app(app_dir, port, env, timeout=20):
    """Start `node app.js` in app_dir and return a NodeApp once it listens.

    port is passed as PORT (0 lets the app pick a free port; the handle then
    has the port the app reported). env is added to a copy of os.environ;
    timeout is in seconds.
    """
    child_env = dict(os.environ)
    child_env.update({key: str(value) for key, value in env.items()})
    child_env["PORT"] = str(port)
    host = child_env.setdefault("HOST", "127.0.0.1")
    process = subprocess.Popen(
        ["node", "app.js"],
        cwd=app_dir,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    app = NodeApp(process, port, host)
    listening = threading.Event()

    def read_output():
        # One reader for the app's whole life, so a chatty app never blocks on
        # a full pipe; the LISTENING line also tells us the real port.
        for line in process.stdout:
            app.output.append(line.rstrip("\n"))
            if line.startswith("LISTENING ") and not listening.is_set():
                app.port = int(line.split()[1])
                app.url = f"http://{host}:{app.port}"
                listening.set()
        process.stdout.close()

    app._reader = threading.Thread(target=read_output, name=f"node-app-{process.pid}", daemon=True)
    app._reader.start()

    deadline = time.monotonic() + timeout
    while not listening.wait(0.05):
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            why = f"exited with code {code}" if code is not None else f"did not listen in {timeout} s"
            app.stop()
            log = "\n".join(app.output[-40:])
            raise NodeAppError(f"node app.js in {app_dir} {why}; its output:\n{log}")
    return app
