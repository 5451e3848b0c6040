"""Run the Node.js peer (tests/interop/app.js) from Python tests.

How it works: the peer is express + express-session + connect-mongo at pinned
versions (tests/interop/package.json and package-lock.json). install_node_app()
copies those three files to a scratch folder and runs `npm ci` there, so the
repository never holds node_modules. start_node_app() runs `node app.js` with
the environment the test gives it (PORT, SESSION_SECRET, MONGO_URL, ...; see
the top of app.js) as a tests/child.py Child, ready at the line
`LISTENING <port>`: .port is the port it bound, stop() ends exactly that
process, by its PID.

The helpers import nothing from pytest: a test or a benchmark calls
node_available() and skips or fails as it sees fit.
"""

import os
import shutil
import subprocess

from .child import Child

INTEROP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "interop")
APP_FILES = ("package.json", "package-lock.json", "app.js")
NPM_CI_TIMEOUT = 300  # seconds; a cold `npm ci` of ~90 packages takes ~10 s


# --- Errors ---

class NodeAppError(RuntimeError):
    """Raised if the Node peer cannot be installed (a start that fails raises child.ChildError)."""


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

def start_node_app(app_dir, port, env, timeout=20):
    """`node app.js` in app_dir as a Child, once it listens. port is passed as PORT
    (0: the app picks a free one and the Child's .port is the one it printed);
    env adds to os.environ (HOST defaults to 127.0.0.1); timeout is in seconds."""
    env = {"HOST": "127.0.0.1", **{key: str(value) for key, value in env.items()}, "PORT": str(port)}
    return Child(["node", "app.js"], cwd=app_dir, env=env, ready=r"^LISTENING (\d+)", timeout=timeout)
