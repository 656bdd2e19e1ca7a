"""`user =`: sockpool started as root drops to that user after opening its
listeners, and every SIGHUP reads the file again as that user. A file the
user cannot read loads at start but fails each reload, so sockpool says so
at start; a file readable through the user's group reloads fine."""

import grp
import os
import pwd
import signal
import subprocess
import tempfile

import harness
from harness import LineCollector, Proxy, ProxyCase, _live, log_matcher, main, make_config

USER = "nobody"
UNREADABLE = log_matcher("WARN", ("not readable by user=" + USER, "reload will fail"))


class UserProxy(Proxy):
    """A Proxy whose config file gets the given mode and group before start."""

    def __init__(self, config, mode, group):
        self.dir = tempfile.mkdtemp(prefix="sockpool-it-")
        os.chmod(self.dir, 0o755)
        self.conf_path = os.path.join(self.dir, "sockpool.ini")
        with open(self.conf_path, "w") as f:
            f.write(config)
        os.chown(self.conf_path, 0, grp.getgrnam(group).gr_gid)
        os.chmod(self.conf_path, mode)
        self.listeners = []
        self.stopped = False
        self.proc = subprocess.Popen([harness.SOCKPOOL_BIN, "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        _live["procs"].add(self)
        self.err = LineCollector(self.proc.stderr, "sockpool-stderr")
        self.out = LineCollector(self.proc.stdout, "sockpool-stdout")
        self.wait_ready()


class User(ProxyCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.fail("dropping privileges needs root (CI runs as root)")
        self.group = grp.getgrgid(pwd.getpwnam(USER).pw_gid).gr_name

    def start(self, mode, group):
        p = UserProxy(make_config(user=USER), mode, group)
        self._proxies.append(p)
        self.addCleanup(p.stop)
        p.wait_log(log_matcher("INFO", ("running as user=" + USER,)))
        return p

    def reload(self, p):
        mark = p.mark()
        p.send_signal(signal.SIGHUP)
        _, line = p.wait_log(lambda l: "reloaded" in l or "reload rejected" in l, start=mark)
        return line

    def test_root_only_file_warns_at_start_and_fails_reloads(self):
        p = self.start(0o600, "root")
        self.assertTrue(p.count_log(UNREADABLE), p.tail())
        line = self.reload(p)
        self.assertIn("reload rejected", line)
        self.assertIn("ermission denied", line)

    def test_file_readable_through_the_group_reloads(self):
        p = self.start(0o640, self.group)
        self.assertFalse(p.count_log(UNREADABLE), p.tail())
        self.assertIn("reloaded", self.reload(p))


if __name__ == "__main__":
    main()
