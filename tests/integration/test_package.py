"""What `meson install` lays out, checked in a DESTDIR: the binary, both man
pages (lint-clean with `groff -man -ww`), the examples, the configuration in
sysconfdir (never overwritten by a reinstall), sockpool.service (accepted by
`systemd-analyze verify` and its offline security check) and the sysusers.d
entry for the service's user."""

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

import harness
from harness import main

SOURCE_ROOT = harness.SOURCE_ROOT
BUILD_DIR = os.environ.get("SOCKPOOL_BUILD_DIR") or os.path.join(SOURCE_ROOT, "build-test")
MAN_PAGES = {"sockpool.8": "man8", "sockpool.ini.5": "man5"}
EXAMPLES = ("default.ini", "docker.ini", "exim.ini", "kumomta.ini", "loopback-rotation.ini")


def run(argv, **kw):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, **kw)


def build_options():
    r = run(["meson", "introspect", BUILD_DIR, "--buildoptions"])
    assert r.returncode == 0, r.stderr
    return {o["name"]: o["value"] for o in json.loads(r.stdout)}


def pkg_var(var):
    r = run(["pkg-config", "--variable=" + var, "systemd"])
    return r.stdout.strip() if r.returncode == 0 else ""


def lint(path):
    """groff's warnings for a man page ('' when clean)."""
    r = run(["groff", "-man", "-ww", "-z", path])
    return (r.stderr + ("" if r.returncode == 0 else "exit %d" % r.returncode)).strip()


class Package(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.opts = build_options()
        prefix = cls.opts["prefix"]
        cls.prefix = prefix
        cls.bindir = os.path.join(prefix, cls.opts["bindir"])
        cls.mandir = os.path.join(prefix, cls.opts["mandir"])
        cls.datadir = os.path.join(prefix, cls.opts["datadir"])
        cls.config = os.path.join(prefix, cls.opts["sysconfdir"], "sockpool", "sockpool.ini")
        cls.unitdir = cls.opts.get("systemdunitdir") or pkg_var("systemdsystemunitdir") or \
            os.path.join(prefix, "lib", "systemd", "system")
        cls.sysusersdir = pkg_var("sysusersdir") or os.path.join(prefix, "lib", "sysusers.d")
        cls.dest = tempfile.mkdtemp(prefix="sockpool-destdir-")
        cls.install()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    @classmethod
    def install(cls):
        r = run(["meson", "install", "-C", BUILD_DIR, "--no-rebuild", "--quiet",
                 "--destdir", cls.dest])
        assert r.returncode == 0, "meson install failed\n" + r.stdout + r.stderr

    def d(self, path):
        """An installed path inside the DESTDIR."""
        return os.path.join(self.dest, path.lstrip("/"))

    def test_layout(self):
        want = [os.path.join(self.bindir, "sockpool"),
                os.path.join(self.unitdir, "sockpool.service"),
                os.path.join(self.sysusersdir, "sockpool.conf"),
                self.config]
        want += [os.path.join(self.mandir, sec, page) for page, sec in MAN_PAGES.items()]
        want += [os.path.join(self.datadir, "doc", "sockpool", "examples", e) for e in EXAMPLES]
        missing = [p for p in want if not os.path.isfile(self.d(p))]
        self.assertEqual(missing, [], "not installed under %s" % self.dest)
        self.assertTrue(os.access(self.d(os.path.join(self.bindir, "sockpool")), os.X_OK))
        with open(self.d(os.path.join(self.sysusersdir, "sockpool.conf"))) as f:
            self.assertRegex(f.read(), r"(?m)^u sockpool\s")

    def test_installed_binary_runs_and_names_its_manuals(self):
        exe = self.d(os.path.join(self.bindir, "sockpool"))
        r = run([exe, "--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        version = r.stdout.split()[-1]
        r = run([exe, "--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sockpool(8)", r.stdout)
        self.assertIn("sockpool.ini(5)", r.stdout)
        r = run([exe, "--check", "-c", self.d(self.config)])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for page, sec in MAN_PAGES.items():
            with open(self.d(os.path.join(self.mandir, sec, page))) as f:
                text = f.read()
            self.assertNotIn("@VERSION@", text)
            self.assertIn("sockpool " + version, text.splitlines()[0])

    def test_config_is_private_and_kept_on_reinstall(self):
        path = self.d(self.config)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        self.assertEqual(mode & 0o007, 0, "config readable by others: %o" % mode)
        with open(os.path.join(SOURCE_ROOT, "examples", "default.ini")) as f:
            with open(path) as g:
                self.assertEqual(g.read(), f.read())
        with open(path, "a") as f:
            f.write("; edited by the operator\n")
        self.install()
        with open(path) as f:
            self.assertTrue(f.read().endswith("; edited by the operator\n"),
                            "reinstall overwrote the configuration")

    def test_man_pages_lint_clean(self):
        for page, sec in MAN_PAGES.items():
            for path in (os.path.join(SOURCE_ROOT, "docs", page),
                         self.d(os.path.join(self.mandir, sec, page))):
                self.assertEqual(lint(path), "", path)

    def test_every_help_option_is_in_sockpool_8(self):
        r = run([self.d(os.path.join(self.bindir, "sockpool")), "--help"])
        options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", r.stdout))
        self.assertTrue({"--config", "--check", "--healthcheck", "--help"} <= options, options)
        with open(os.path.join(SOURCE_ROOT, "docs", "sockpool.8")) as f:
            page = f.read()
        section = page[page.index(".SH OPTIONS"):page.index(".SH SIGNALS")]
        documented = {"--" + m for m in re.findall(r"\\-\\-([a-z]+)(?![a-z])", section)}
        documented |= {"-" + m for m in re.findall(r"(?<!\\-)\\-([a-zA-Z])(?![\w])", section)}
        missing = sorted(options - documented)
        self.assertEqual(missing, [], "options of --help missing from sockpool(8) OPTIONS")

    def test_lint_catches_a_broken_page(self):
        with tempfile.NamedTemporaryFile("w", suffix=".8") as f:
            f.write(".TH X 8\n.SH NAME\nx \\- y\n.BOGUS\n\\fBunclosed\n.ft Q\n")
            f.flush()
            self.assertNotEqual(lint(f.name), "")

    def unit_text(self):
        with open(self.d(os.path.join(self.unitdir, "sockpool.service"))) as f:
            return f.read()

    def test_unit_settings(self):
        unit = self.unit_text()
        settings = dict(re.findall(r"(?m)^(\w+)=(.*)$", unit))
        self.assertEqual(settings["Type"], "notify")
        self.assertEqual(settings["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertEqual(settings["ExecStart"], "%s -c %s" % (
            os.path.join(self.bindir, "sockpool"), self.config))
        self.assertEqual(settings["User"], "sockpool")
        self.assertGreaterEqual(int(settings["LimitNOFILE"]), 65536)
        stop = re.fullmatch(r"(\d+)s", settings["TimeoutStopSec"])
        self.assertTrue(stop and int(stop.group(1)) > 30, "TimeoutStopSec not above 30s")
        for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes",
                           "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
                           "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
                           "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
                           "KillSignal": "SIGTERM"}.items():
            self.assertEqual(settings.get(key), value, key)

    def verify_copy(self):
        """The installed unit with ExecStart pointing into the DESTDIR, since
        systemd-analyze wants the binary where the unit says."""
        d = tempfile.mkdtemp(prefix="sockpool-unit-")
        self.addCleanup(shutil.rmtree, d, True)
        exe = os.path.join(self.bindir, "sockpool")
        text = self.unit_text().replace("ExecStart=" + exe, "ExecStart=" + self.d(exe))
        path = os.path.join(d, "sockpool.service")
        with open(path, "w") as f:
            f.write(text)
        env = dict(os.environ, MANPATH=self.d(self.mandir), SYSTEMD_LOG_COLOR="0")
        return path, env

    def test_systemd_analyze_verify(self):
        path, env = self.verify_copy()
        r = run(["systemd-analyze", "verify", path], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual((r.stdout + r.stderr).strip(), "")
        # The check is real: a broken copy is reported.
        with open(path, "a") as f:
            f.write("NoSuchSetting=1\n")
        r = run(["systemd-analyze", "verify", path], env=env)
        self.assertIn("NoSuchSetting", r.stdout + r.stderr)

    def test_systemd_analyze_security(self):
        path, env = self.verify_copy()
        r = run(["systemd-analyze", "security", "--offline=yes", "--threshold=30", path],
                env=env)
        self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr)


if __name__ == "__main__":
    main()
