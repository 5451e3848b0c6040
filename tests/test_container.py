"""The container image: built from today's tree and run for real, offline.

This machine has no Docker engine and no registry, so Debian's own tools do it:

1. Base. `mmdebstrap --variant=minbase --include=python3,...` makes a Debian
   bookworm root with Python (about 30 s) and `podman import` turns it into the
   local image BASE_IMAGE. It is kept between runs (`podman image exists`), so
   only the first run pays; `podman rmi` it to start again.
2. Build. `buildah build --layers` builds the Containerfile on that base on
   every run. The layer cache stays correct: a step is reused only if its
   parent layer and its instruction are the same, and for COPY only if the
   copied files' content is the same, so a changed service.py, requirements.txt
   or base rebuilds from that step on. The test then uses the image by the ID
   this build printed, never by a tag another run may have moved.
3. Run. `buildah from` + `buildah run --isolation chroot` runs the image's CMD
   with the image's user, environment and working directory, on the host's
   network. `podman run` itself fails in this sandbox (cgroups, rlimits), so
   what this does not show is Docker's or Podman's own runtime: cgroups,
   network namespaces, the service as PID 1 of a PID namespace, `--read-only`.
4. Read-only root, shown without a runtime that can make it so: a listing of
   the container's root (`buildah mount`: every path with its mode, owner,
   size, mtime and ctime, /tmp and the kernel's mounts left out) is taken
   before and after the service's run; nothing may differ beyond what a
   control run of `id -u` shows `buildah run` itself changes (its mount points).

HTTPS from a build here goes through an interception certificate that only
the host's CA bundle trusts: the build mounts that bundle and passes its path
as the Containerfile's PIP_CERT (empty for everyone else).
"""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time

import pytest
from packaging.requirements import Requirement

from support.child import Child
from support.basics import skip_unless
from support.realhttp import LISTENING, Client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_IMAGE = "localhost/sessions-ci-base:bookworm-minbase"
IMAGE = "localhost/sessions-ci:latest"  # a name for people looking at `podman images`; the test uses the ID
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
# What `buildah run` itself changes in a container's root on every run (mount points it creates and removes).
BUILDAH_OWN = {"etc", "etc/hosts", "etc/hostname", "etc/resolv.conf", "run", "run/.containerenv"}
NOT_ROOTFS = {"tmp", "proc", "sys", "dev"}  # /tmp may be written; the others are the kernel's, mounted per run

# Building the base on a cold machine takes a minute or two beyond the suite's per-test bound.
pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]


def run(argv, timeout=60, check=True):
    """Run a command to completion (bounded); fail the test with its stderr if it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        pytest.fail(f"`{' '.join(argv[:6])} ...` exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def ulimits():
    """--ulimit flags within this process's own limits. buildah's defaults (nofile 1024, nproc 32768) fail
    where the hard limits are lower: root here may not raise a limit. `buildah run` sets nproc 32768 before
    the container's value, so that is the most nproc can be."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = min(n for n in (resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768) if n >= 0)  # -1: unlimited
    return ["--ulimit", "nofile=%d:%d" % nofile, "--ulimit", f"nproc={nproc}:{nproc}"]


def say(request, text):
    """A line in the run's own output (not captured), to report the image's size and packages."""
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n[container] {text}", flush=True)


@pytest.fixture(scope="module")
def base_image(tmp_path_factory, request):
    missing = [tool for tool in ("mmdebstrap", "podman", "buildah") if shutil.which(tool) is None]
    skip_unless(f"the container test needs {', '.join(missing)} (Debian packages)" if missing else None)
    skip_unless(None if os.geteuid() == 0 else "the container test needs root (buildah, mmdebstrap)")
    if run(["podman", "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        return BASE_IMAGE
    started = time.monotonic()
    tarball = tmp_path_factory.mktemp("base") / "rootfs.tar"
    run(["mmdebstrap", "--quiet", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(tarball)],
        timeout=300)
    run(["podman", "import", "--quiet", str(tarball), BASE_IMAGE], timeout=120)
    tarball.unlink()
    say(request, f"made the base image {BASE_IMAGE} in {time.monotonic() - started:.0f} s")
    return BASE_IMAGE


@pytest.fixture(scope="module")
def image(base_image, tmp_path_factory, request):
    """The Containerfile built from the current tree; returns (image id, its Docker-format config)."""
    started, iidfile = time.monotonic(), tmp_path_factory.mktemp("build") / "iid"
    previous = run(["podman", "image", "inspect", "--format", "{{.Id}}", IMAGE], check=False).stdout.strip()
    ca = ["-v", f"{HOST_CA}:{HOST_CA}:ro", "--build-arg", f"PIP_CERT={HOST_CA}"] if os.path.exists(HOST_CA) else []
    # --format docker: the OCI format has no HEALTHCHECK; --pull=never: offline, the base is local.
    run(["buildah", "build", "--quiet", "--isolation", "chroot", "--format", "docker", "--layers", "--pull=never",
         *ulimits(), "--build-arg", f"BASE={base_image}", *ca, "--iidfile", str(iidfile), "-t", IMAGE, ROOT],
        timeout=300)
    image_id = iidfile.read_text().strip()
    if previous and previous not in image_id:  # the last tree's image, untagged now: gone, unless still in use
        run(["buildah", "rmi", previous], check=False)
    say(request, f"built {IMAGE} ({image_id[7:19]}) in {time.monotonic() - started:.0f} s")
    inspected = json.loads(run(["buildah", "inspect", "--type", "image", image_id]).stdout)
    return image_id, inspected["Docker"]["config"]


@pytest.fixture(scope="module")
def container(image):
    """A working container of the image and the host path of its root (`buildah mount`); removed by name after."""
    name = f"sessions-ci-test-{os.getpid()}"
    run(["buildah", "from", "--pull=never", *ulimits(), "--name", name, image[0]])
    try:
        yield name, run(["buildah", "mount", name]).stdout.strip()
    finally:
        run(["buildah", "rm", name], check=False)


def in_container(container, *argv, env=(), timeout=60, check=True):
    flags = [option for pair in env for option in ("--env", pair)]
    return run(["buildah", "run", "--isolation", "chroot", *flags, container[0], "--", *argv], timeout, check)


def listing(root):
    """Every path of a container root outside NOT_ROOTFS with its type, mode, owner, size, mtime and ctime.
    A file written, created, removed, renamed or re-permissioned changes its entry (or adds or drops one).
    The root directory itself is left out: overlayfs changes its times when /tmp is first written."""
    entries = {}
    for directory, subdirs, files in os.walk(root):
        if directory == root:
            subdirs[:] = [d for d in subdirs if d not in NOT_ROOTFS]
        for path in [os.path.join(directory, name) for name in subdirs + files]:
            st = os.lstat(path)
            entries[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                                    st.st_mtime_ns, st.st_ctime_ns)
    return entries


def changed(before, after):
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def service_process(root_pid, argv):
    """The PID and real uid of the process running `argv` below `root_pid` (buildah run -> chroot runtime ->
    exec helper -> the service), found in /proc."""
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                children.setdefault(int(stat.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        except OSError:
            continue  # a process that ended while we looked
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with open(f"/proc/{pid}/cmdline") as f:
            cmdline = f.read().split("\0")[:-1]
        if cmdline[1:] == argv[1:] and os.path.basename(cmdline[0]) == argv[0]:
            with open(f"/proc/{pid}/status") as f:
                uid = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
            return pid, uid
    raise AssertionError(f"no process {argv} below pid {root_pid}")


def test_image_config_is_the_recipe(image):
    _, config = image
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["Cmd"] == ["python", "service.py"]  # exec form: no shell between the signal and the service
    assert not config.get("Entrypoint")
    assert config["User"].split(":")[0] not in ("", "0", "root")
    assert config["StopSignal"] == "SIGTERM"
    assert "4000/tcp" in config["ExposedPorts"]
    keys = ("HOST", "PORT", "ADMIN_PORT", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")
    assert {key: env.get(key) for key in keys} == {"HOST": "0.0.0.0", "PORT": "4000", "ADMIN_PORT": "9000",
                                                   "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    assert "9000/tcp" not in config["ExposedPorts"]  # the management port is not for the world
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert not any(key.startswith("PIP") for key in env)  # the build's CA path stays in the build
    test = config["Healthcheck"]["Test"]
    assert test[:3] == ["CMD", "python", "-c"] and "urllib.request" in test[3] and "/healthz" in test[3]
    assert "ADMIN_PORT" in test[3]  # the probe that never queues behind session requests


def canonical(name):
    """A distribution's name as PEP 503 compares them: precis-i18n and precis_i18n are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_image_holds_only_the_service_and_its_runtime_requirements(container):
    _, root = container
    assert sorted(os.listdir(os.path.join(root, "app"))) == ["requirements.txt", "service.py", "sessions.py"]
    # What the venv holds, asked of the image's own Python.
    found = json.loads(in_container(container, "python", "-c", (
        "import importlib.metadata as m, json, platform; print(json.dumps({'python': platform.python_version(),"
        " 'dists': {d.metadata['Name'].lower(): d.version for d in m.distributions()}}))")).stdout)
    dists = {canonical(name): version for name, version in found["dists"].items()}
    environment = {"python_version": ".".join(found["python"].split(".")[:2])}

    def pins(filename):
        with open(os.path.join(ROOT, filename)) as f:
            lines = [line.split("#")[0].strip() for line in f]
        requirements = [Requirement(line) for line in lines if line and not line.startswith("-r")]
        return {canonical(r.name): r for r in requirements if r.marker is None or r.marker.evaluate(environment)}

    runtime = pins("requirements.txt")
    assert {name: dists.get(name) for name in runtime} == {
        name: next(iter(r.specifier)).version for name, r in runtime.items()}  # exactly the pins
    assert not set(pins("requirements-dev.txt")) & set(dists)  # no pytest, webtest, selenium, ...
    assert "pip" not in dists and "setuptools" not in dists  # installing happened at build time only
    tools = "gcc cc cpp make pip pip3 curl wget"
    assert in_container(container, "sh", "-c", f"for tool in {tools}; do command -v $tool; done; true").stdout == ""


def test_service_runs_from_the_image_and_writes_nothing_outside_tmp(image, container):
    _, config = image
    name, root = container
    # 1. A control run (`id -u`): what buildah run alone changes in the container's root.
    before_control = listing(root)
    uid = int(in_container(container, "id", "-u").stdout)
    assert uid != 0
    before = listing(root)
    buildah_changes = changed(before_control, before)
    assert buildah_changes <= BUILDAH_OWN, buildah_changes

    # 2. The image's CMD, on a port the service picks (PORT=0) on the image's HOST (0.0.0.0).
    argv = ["buildah", "run", "--isolation", "chroot", "--env", "PORT=0", "--env", "ADMIN_PORT=0",
            "--env", "SESSION_SECRET=container-secret", name, "--", *config["Cmd"]]
    with Child(argv, ready=LISTENING, timeout=60) as service:
        assert "listening on http://0.0.0.0:" in service.log()
        pid, service_uid = service_process(service.pid, ["python", *config["Cmd"][1:]])
        assert service_uid == uid  # the service itself, not only `id`, runs as the image's user

        # 3. A session over HTTP: log in, read it, the HEALTHCHECK command answers 0, log out, gone.
        client = Client("127.0.0.1", service.port)
        login = client.post("/", {"name": "Alice"})
        assert login.status == 200 and login.json() == {"name": "Alice"}
        assert "HttpOnly" in login.set_cookies()[0]
        assert client.get("/name").json() == {"name": "Alice"}
        healthcheck = config["Healthcheck"]["Test"][1:]  # ["CMD", ...]: exec form, no shell
        admin = int(re.search(r"management port http://\S+:(\d+)", service.wait_for("management port")).group(1))
        assert in_container(container, *healthcheck, env=[f"ADMIN_PORT={admin}"], check=False).returncode == 0
        assert client.post("/logout").json() == {"loggedOut": True}
        assert client.get("/name").status == 404

        # 4. SIGTERM to the service's own PID, as `docker stop` does to the container's main process (buildah
        #    1.28 does not forward a signal sent to `buildah run`: the service is killed). Exit 0, quietly.
        os.kill(pid, signal.SIGTERM)
        assert service.stop(0, timeout=30) == 0, service.log()  # signal 0: send nothing, wait for the exit
        assert "Traceback" not in service.log(), service.log()

    # 5. With the service gone the HEALTHCHECK fails (so it can).
    assert in_container(container, *healthcheck, env=[f"ADMIN_PORT={admin}"], check=False).returncode == 1

    # 6. Read-only root: the service's run (and the HEALTHCHECK runs) changed no path outside /tmp beyond what
    #    the control run showed buildah itself changes; a write anywhere else adds or changes that path's entry.
    assert changed(before, listing(root)) <= buildah_changes


def test_image_size_and_packages(image, base_image, container, request):
    def size(ref):
        return int(run(["podman", "image", "inspect", "--format", "{{.Size}}", ref]).stdout)

    # Every installed Debian package with what it needs, asked of the image's own dpkg.
    fields = "${db:Status-Abbrev}\t${Package}\t${Priority}\t${Essential}\t${Provides}\t${Pre-Depends}, ${Depends}\n"
    rows = [line.split("\t") for line in in_container(container, "dpkg-query", "-W", "-f", fields).stdout.splitlines()]
    packages = {row[1]: row for row in rows if row[0].startswith("ii")}
    # The minbase set: what Essential and Priority: required packages and apt need (mmdebstrap's definition).
    minbase = dependency_closure(packages, [p for p, row in packages.items() if row[2] == "required" or
                                            row[3] == "yes"] + ["apt"])
    added = sorted(set(packages) - minbase)
    say(request, f"image {size(image[0]) / 1e6:.0f} MB (base {size(base_image) / 1e6:.0f} MB); {len(packages)} Debian "
                 f"packages: {len(minbase)} of minbase, {len(added)} for Python and CA certificates: {' '.join(added)}")
    assert "python3" in added and "ca-certificates" in added
    assert not {"gcc", "gcc-12", "cpp", "make", "build-essential", "libc6-dev", "python3-dev", "curl"} & set(packages)


def dependency_closure(packages, roots):
    """The installed packages `roots` need, transitively (the first installed alternative of each dependency)."""
    provided_by = {}
    for name, row in packages.items():
        for virtual in filter(None, (item.split()[0] for item in row[4].split(",") if item.strip())):
            provided_by.setdefault(virtual, name)
    needed, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for group in filter(str.strip, packages[name][5].split(",")):
            for alternative in group.split("|"):
                dependency = alternative.split()[0].split(":")[0]
                dependency = dependency if dependency in packages else provided_by.get(dependency)
                if dependency:
                    todo.append(dependency)
                    break
    return needed
