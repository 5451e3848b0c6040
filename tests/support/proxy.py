"""deploy/nginx.conf as a test runs it: a test CA and certificate, the file with
only its "# EDIT" lines changed, nginx as a Child, and an HTTPS client.

nginx runs as the current user, in the foreground (`daemon off`), with its pid,
logs and temp files under the test's directory, and logs to stderr (which Child
reads). It prints nothing of its own when ready; the master has opened the
listening socket before it logs "start worker processes", so that line is the
readiness signal, and connections made after it wait in the kernel's backlog
until a worker accepts them.
"""

import base64
import hashlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import time

from .child import Child
from .realhttp import ROOT, Client

NGINX = "/usr/sbin/nginx"
CONF = os.path.join(ROOT, "deploy", "nginx.conf")
UPSTREAMS = ("127.0.0.1:4001", "127.0.0.1:4002", "127.0.0.1:4003")  # as the file names them


def missing():
    if not os.access(NGINX, os.X_OK):
        return f"{NGINX} is missing: apt-get install nginx"
    if shutil.which("openssl") is None:
        return "openssl is missing: apt-get install openssl"
    return None


def make_certificates(directory):
    """A CA and a server certificate for 127.0.0.1 and localhost (SAN) it signed, in directory/tls.
    Returns a dict of paths (ca, cert, key) and the certificate key's SPKI SHA-256, base64 (for Chromium)."""
    tls = os.path.join(directory, "tls")
    os.makedirs(tls, exist_ok=True)
    paths = {name: os.path.join(tls, name) for name in ("ca.pem", "ca.key", "server.csr", "fullchain.pem",
                                                        "privkey.pem", "server.ext")}
    with open(paths["server.ext"], "w") as ext:
        ext.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (
            ["req", "-x509", *ec, "-keyout", paths["ca.key"], "-out", paths["ca.pem"], "-days", "2",
             "-subj", "/CN=session test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["req", "-new", *ec, "-keyout", paths["privkey.pem"], "-out", paths["server.csr"],
             "-subj", "/CN=localhost"],
            ["x509", "-req", "-in", paths["server.csr"], "-CA", paths["ca.pem"], "-CAkey", paths["ca.key"],
             "-set_serial", "2", "-days", "2", "-extfile", paths["server.ext"], "-out", paths["fullchain.pem"]]):
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=30)
    spki = subprocess.run(["openssl", "x509", "-in", paths["fullchain.pem"], "-noout", "-pubkey"], check=True,
                          capture_output=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=spki, check=True,
                         capture_output=True, timeout=30).stdout
    return {"ca": paths["ca.pem"], "cert": paths["fullchain.pem"], "key": paths["privkey.pem"],
            "spki": base64.b64encode(hashlib.sha256(der).digest()).decode()}


def render(directory, listen_port, upstream_ports, tls, rate="1000r/s", burst=1000):
    """deploy/nginx.conf with only its "# EDIT" lines changed, written to directory/nginx.conf.
    rate and burst: the per-client request limit; the tests' traffic comes from one address,
    so by default far above the file's; the limit's own test sets them low."""
    directory = os.fspath(directory)
    replacements = {"/run/nginx.pid": f"{directory}/nginx.pid",
                    "/var/log/nginx/error.log notice": "stderr notice",
                    "/var/log/nginx/access.log": f"{directory}/access.log",
                    "/var/lib/nginx/": f"{directory}/",
                    "listen 443 ": f"listen 127.0.0.1:{listen_port} ",
                    "/etc/nginx/tls/fullchain.pem": tls["cert"],
                    "/etc/nginx/tls/privkey.pem": tls["key"],
                    "rate=50r/s": f"rate={rate}", "burst=100 ": f"burst={burst} ",
                    **{name: f"127.0.0.1:{port}" for name, port in zip(UPSTREAMS, upstream_ports, strict=True)}}
    used, lines = set(), []
    with open(CONF) as source:
        for line in source:
            if re.search(r";\s*# EDIT\b", line):  # a directive marked for editing
                edited = line
                for old, new in replacements.items():
                    if old in edited:
                        edited, _ = edited.replace(old, new), used.add(old)
                assert edited != line, f"a '# EDIT' line the test does not know how to fill in: {line!r}"
                line = edited
            lines.append(line)
    assert used == set(replacements), f"deploy/nginx.conf no longer has {set(replacements) - used}"
    path = os.path.join(directory, "nginx.conf")
    with open(path, "w") as target:
        target.writelines(lines)
    return path


def start_nginx(directory, listen_port, upstream_ports, tls, timeout=15, **limits):
    """nginx on 127.0.0.1:listen_port in front of the given ports, as a Child (port = listen_port);
    limits: render()'s rate and burst."""
    directory = os.fspath(directory)
    conf = render(directory, listen_port, upstream_ports, tls, **limits)
    # -e: the startup error log before the file is read (Debian's default is /var/log/nginx, not ours).
    child = Child([NGINX, "-e", "stderr", "-p", directory, "-c", conf, "-g", "daemon off;"],
                  ready=r"start worker processes", timeout=timeout)
    child.port = listen_port
    return child


def stop_nginx(child, timeout=15):
    """SIGQUIT: graceful shutdown (workers finish their requests); our own child by PID."""
    if child.running():
        child.stop(signal.SIGQUIT, timeout)


def tls_context(tls):
    """Verifies the proxy's certificate against the test CA and its name (127.0.0.1); no -k."""
    return ssl.create_default_context(cafile=tls["ca"])


def tls_client(port, tls, timeout=20):
    """One user over HTTPS to the proxy, verifying its certificate: realhttp.Client with the test CA."""
    return Client("127.0.0.1", port, timeout=timeout, context=tls_context(tls))


def wait_until(predicate, timeout, interval=0.05):
    """True once predicate() is true, False after timeout seconds (bounded polling)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def access_lines(child, method, path, start=0):
    """The service's access log lines for `METHOD path` from line `start` on."""
    regex = re.compile(rf" INFO {re.escape(method)} {re.escape(path)} \d{{3}} ")
    return [line for line in child.lines[start:] if regex.search(line)]
