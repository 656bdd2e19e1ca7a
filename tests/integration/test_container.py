"""The container image, built from the Dockerfile as CI can build it and run
as the image's own root filesystem.

No image registry is reachable and this machine refuses the container
runtime's setrlimit, so: `mmdebstrap --variant=minbase bookworm` makes the
base (cached under the build directory), `podman import` names it, `podman
build --isolation chroot --format docker` builds the Dockerfile over it
(BASE_IMAGE build arg), and `podman create` + `podman mount` expose the
image's root filesystem, where `chroot --userspec` runs sockpool as the
image's non-root user in a network namespace of the test's own. There the
shipped config starts, the image's own HEALTHCHECK command passes (and fails
once sockpool is gone), `curl --socks5` goes through, SIGTERM exits 0, and a
config put where the image reads it is what the HEALTHCHECK follows.

Environment: SOCKPOOL_BUILD_DIR (meson passes it) holds the base tarball
cache in container/; SOCKPOOL_DEBIAN_MIRROR overrides the mirror read from
apt's sources."""

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import harness
from harness import LineCollector, NetnsCase, SANITIZER_MARKS, _live, http_body, log_matcher

SOURCE_ROOT = harness.SOURCE_ROOT
BUILD_DIR = os.environ.get("SOCKPOOL_BUILD_DIR") or os.path.join(SOURCE_ROOT, "build-test")
CACHE = os.path.join(BUILD_DIR, "container")
# podman keeps its images and layers under the build directory too: nothing
# is left in the machine's own container storage, and removing the build
# directory removes them.
PODMAN = ["podman", "--root", os.path.join(CACHE, "storage"),
          "--runroot", os.path.join(CACHE, "run"), "--storage-driver", "overlay"]
BASE_TAR = os.path.join(CACHE, "base-bookworm-minbase.tar")
BASE_IMAGE = "localhost/sockpool-base:bookworm"
IMAGE = "localhost/sockpool-test:%d" % os.getpid()
SUITE = "bookworm"

# What podman made, for cleanup even when the test is killed.
_made = {"containers": [], "images": []}


def sh(argv, timeout=600, check=True, **kw):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d\n%s%s" % (" ".join(argv), r.returncode,
                                                     r.stdout[-3000:], r.stderr[-3000:]))
    return r


def debian_mirror():
    """The Debian mirror apt uses here (deb822 or one-line sources)."""
    if os.environ.get("SOCKPOOL_DEBIAN_MIRROR"):
        return os.environ["SOCKPOOL_DEBIAN_MIRROR"]
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) \
        + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        m = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+%s\s" % SUITE, text, re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def ensure_base_image():
    """The base tarball (made once per build directory) imported as BASE_IMAGE."""
    os.makedirs(CACHE, exist_ok=True)
    fresh = False
    if not os.path.exists(BASE_TAR):
        tmp = BASE_TAR + ".part"
        sh(["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar", "--quiet",
            SUITE, tmp,
            debian_mirror()], timeout=900)
        os.rename(tmp, BASE_TAR)
        fresh = True
    with open(BASE_TAR, "rb") as f:
        digest = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    stamp = os.path.join(CACHE, "base-imported")
    known = open(stamp).read().strip() if os.path.exists(stamp) else ""
    have = sh(PODMAN + ["image", "exists", BASE_IMAGE], check=False).returncode == 0
    if fresh or not have or known != digest.hexdigest():
        sh(PODMAN + ["import", BASE_TAR, BASE_IMAGE], timeout=300)
        with open(stamp, "w") as f:
            f.write(digest.hexdigest())


def cleanup_podman():
    for cid in reversed(_made["containers"]):
        sh(PODMAN + ["umount", cid], check=False, timeout=60)
        sh(PODMAN + ["rm", "-f", cid], check=False, timeout=60)
    _made["containers"].clear()
    for image in _made["images"]:
        sh(PODMAN + ["rmi", "-f", image], check=False, timeout=120)
    _made["images"].clear()
    # Untagged stage images are the layer cache of the next build: keep the
    # recent ones, drop what earlier days left.
    sh(PODMAN + ["image", "prune", "-f", "--filter", "until=24h"], check=False, timeout=120)


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def passwd_ids(root, user):
    with open(os.path.join(root, "etc", "passwd")) as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == user:
                return int(fields[2]), int(fields[3])
    raise AssertionError("user %r not in the image's /etc/passwd" % user)


class InImage:
    """A command run inside the image's root filesystem as the image's user,
    with /proc and /dev in a private mount namespace (gone when it exits)."""

    def __init__(self, root, uid, gid, argv, env=None):
        script = ('mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && '
                  'root="$1" && spec="$2" && shift 2 && '
                  'exec chroot --userspec="$spec" "$root" "$@"')
        self.argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                     "sh", root, "%d:%d" % (uid, gid), *argv]
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": "/nonexistent", **(env or {})}

    def run(self, timeout=60):
        return subprocess.run(self.argv, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, env=self.env)

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env)
        _live["procs"].add(self)
        self.err = LineCollector(self.proc.stderr, "image-stderr")
        self.out = LineCollector(self.proc.stdout, "image-stdout")
        return self

    def tail(self, n=40):
        return "\n".join("[image] " + l for l in self.err.snapshot()[-n:])

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _live["procs"].discard(self)
        self.err.join(5)
        self.out.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


class Container(NetnsCase):
    @classmethod
    def setUpClass(cls):
        started = time.monotonic()
        try:
            ensure_base_image()
            base_done = time.monotonic()
            _made["images"].append(IMAGE)
            sh(PODMAN + ["build", "--isolation", "chroot", "--format", "docker",
                "--network", "host", "--build-arg", "BASE_IMAGE=" + BASE_IMAGE,
                "-f", os.path.join(SOURCE_ROOT, "Dockerfile"), "-t", IMAGE, SOURCE_ROOT],
               timeout=1200)
            built = time.monotonic()
            cls.config = json.loads(sh(PODMAN + ["image", "inspect", IMAGE]).stdout)[0]
            cid = sh(PODMAN + ["create", IMAGE]).stdout.strip().splitlines()[-1]
            _made["containers"].append(cid)
            cls.root = sh(PODMAN + ["mount", cid]).stdout.strip()
        except BaseException:
            cleanup_podman()
            raise
        sys.stderr.write("container: base %.1fs, build %.1fs, create+mount %.1fs\n" % (
            base_done - started, built - base_done, time.monotonic() - built))

    @classmethod
    def tearDownClass(cls):
        cleanup_podman()

    def setUp(self):
        super().setUp()
        cfg = self.config["Config"]
        self.user = cfg.get("User") or ""
        self.uid, self.gid = passwd_ids(self.root, self.user)
        self.entrypoint = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
        test = (self.config.get("Healthcheck") or {}).get("Test") or []
        self.assertEqual(test[:1], ["CMD"], "HEALTHCHECK is not an exec-form CMD: %r" % test)
        self.healthcheck = test[1:]

    def in_image(self, argv):
        return InImage(self.root, self.uid, self.gid, argv)

    def start_image(self):
        p = self.in_image(self.entrypoint).start()
        self.addCleanup(p.stop)
        hit = p.err.wait(log_matcher(regex=r"^INFO main: ready"), 20)
        if not hit:
            p.proc.poll()
            self.fail("sockpool in the image not ready (exit %r)\n%s" % (
                p.proc.returncode, p.tail()))
        return p

    def assert_healthcheck(self, want_rc):
        r = self.in_image(self.healthcheck).run()
        self.assertEqual(r.returncode, want_rc, "HEALTHCHECK %r: %s%s" % (
            self.healthcheck, r.stdout, r.stderr))
        return r.stdout

    def test_image_metadata(self):
        cfg = self.config["Config"]
        self.assertNotIn(self.user, ("", "root", "0"))
        self.assertEqual((self.uid, self.gid), (999, 999))  # what README tells to chgrp
        self.assertEqual(cfg.get("StopSignal"), "SIGTERM")
        self.assertEqual(set(cfg.get("ExposedPorts") or {}), {"1080/tcp", "9180/tcp"})
        self.assertIn("/etc/sockpool/sockpool.ini", self.entrypoint)
        self.assertIn("--healthcheck", self.healthcheck)
        self.assertIn("/etc/sockpool/sockpool.ini", self.healthcheck)
        # The HEALTHCHECK needs no curl, and the image carries none.
        self.assertFalse(os.path.exists(os.path.join(self.root, "usr/bin/curl")))

    def test_shipped_config_runs_as_the_image_user_healthy_and_relays(self):
        self.assert_healthcheck(1)  # nothing runs yet: the check can fail
        p = self.start_image()
        with open("/proc/%d/status" % p.proc.pid) as f:
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", f.read(), re.M)
        self.assertEqual(int(uids.group(1)), self.uid)
        self.assertEqual(int(uids.group(2)), self.uid)
        out = self.assert_healthcheck(0)
        self.assertIn("/healthz 200", out)

        http = self.start_http()
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "--socks5", "127.0.0.1:1080",
                            "http://127.0.0.1:%d/data/4096" % http.addr[1]],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr.decode() + "\n" + p.tail())
        self.assertEqual(r.stdout, http_body(4096))

        self.assertEqual(p.stop(), 0, p.tail())
        text = "\n".join(p.err.snapshot())
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, text)
        self.assertIn("INFO main: stopped", text)
        self.assert_healthcheck(1)

    def test_healthcheck_follows_the_config_put_in_place(self):
        path = os.path.join(self.root, "etc/sockpool/sockpool.ini")
        with open(path) as f:
            shipped = f.read()
        self.addCleanup(write_file, path, shipped)
        # Another port and no admin endpoint: the check must follow it.
        write_file(path, "[server]\nlisten = 127.0.0.1:1085\nadmin_listen =\nallow = 127.0.0.0/8\n")
        self.start_image()
        out = self.assert_healthcheck(0)
        self.assertIn("127.0.0.1:1085", out)


def _on_term(signum, frame):
    cleanup_podman()
    harness._on_term(signum, frame)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    import unittest
    unittest.main(verbosity=2)
