"""examples/kumomta.ini as shipped, driven the way its own comments tell
KumoMTA to drive it: the sources of the Lua form (get_egress_source ->
make_egress_source) and of the sources-helper TOML form are read from the
file, must agree, and each one's BIND+CONNECT with its socks5_proxy_username
and socks5_proxy_password egresses from exactly its source address. Runs in
a namespace holding the example's addresses."""

import ipaddress
import os
import re
import tomllib

from harness import (CMD_BIND, CMD_CONNECT, NetnsCase, RecordServer, SOURCE_ROOT,
                     connect_to, greeting, main, read_reply, read_until_close, recv_exact,
                     request, userpass)

KUMO_EXAMPLE = os.path.join(SOURCE_ROOT, "examples", "kumomta.ini")
DEST4, DEST6 = "192.0.2.200", "2001:db8::200"


def comment_block(path):
    """The text of the leading `;` comment lines, without the `; ` prefix."""
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith(";"):
                break
            text = line[1:].rstrip("\n")
            lines.append(text[1:] if text.startswith(" ") else text)
    return "\n".join(lines)


def lua_sources(text):
    """name -> make_egress_source fields, from the Lua form."""
    block = text[text.index("kumo.on('get_egress_source'"):]
    block = block[:block.index("end)")]
    consts = dict(re.findall(r"local (\w+) = '([^']*)'", text))
    addresses = dict(re.findall(r"\['([\w.-]+)'\] = '([^']*)'", text))
    fields = {}
    for key, value in re.findall(r"^\s*(\w+) = ([^,]+),", block, re.M):
        value = value.strip()
        if value.startswith("'"):
            fields[key] = value.strip("'")
        elif value in consts:
            fields[key] = consts[value]
        else:
            fields[key] = value
    assert fields.get("name") == "source_name", fields
    assert fields.get("socks5_proxy_source_address") == "address", fields
    out = {}
    for name, address in addresses.items():
        f = dict(fields, name=name, socks5_proxy_source_address=address)
        f.pop("suspend_when_proxy_unhealthy", None)
        out[name] = f
    return out


def toml_sources(text):
    """name -> [source."NAME"] fields, and the pool, from the TOML form."""
    start = text.index('[source."')
    doc = tomllib.loads(text[start:text.index("A BIND to an address", start)])
    out = {}
    for name, fields in doc["source"].items():
        f = {k: v for k, v in fields.items() if k != "suspend_when_proxy_unhealthy"}
        f["name"] = name
        out[name] = f
    return out, doc["pool"]


class KumoExample(NetnsCase):
    ADDRS = ("10.0.0.5", "192.0.2.10", "192.0.2.11", "2001:db8::10", "192.0.2.99", DEST4,
             DEST6)

    def setUp(self):
        super().setUp()
        text = comment_block(KUMO_EXAMPLE)
        self.lua = lua_sources(text)
        self.toml, self.toml_pools = toml_sources(text)
        with open(KUMO_EXAMPLE) as f:
            self.proxy = self.start_proxy(f.read())
        self.rec = {4: self.start_server(RecordServer, DEST4),
                    6: self.start_server(RecordServer, DEST6)}

    def kumo(self, fields, src):
        """KumoMTA's exchange: greeting offering no-auth and user/pass, RFC 1929
        login, BIND src:0, wait, CONNECT. @return the peer the destination saw."""
        host, port = fields["socks5_proxy_server"].rsplit(":", 1)
        self.assertEqual((host, int(port)), self.proxy.addr)
        s = connect_to(self.proxy.addr, source="10.0.0.5")
        self.addCleanup(s.close)
        s.sendall(greeting((0, 2)))
        self.assertEqual(recv_exact(s, 2), b"\x05\x02")
        s.sendall(userpass(fields["socks5_proxy_username"], fields["socks5_proxy_password"]))
        self.assertEqual(recv_exact(s, 2), b"\x01\x00", "login refused")
        s.sendall(request(CMD_BIND, src, 0))
        bind = read_reply(s)
        if bind.rep != 0:
            return None
        family = ipaddress.ip_address(src).version
        s.sendall(request(CMD_CONNECT, *self.rec[family].addr))
        self.assertEqual(read_reply(s).rep, 0)
        data, how = read_until_close(s, 10)
        self.assertEqual(how, "eof")
        return data.decode().split()[0]

    def test_lua_and_toml_forms_agree(self):
        self.assertEqual(set(self.lua), {"ip-1", "ip-2", "ip-3"})
        self.assertEqual(self.lua, self.toml)
        for f in self.lua.values():
            self.assertEqual(f["ehlo_domain"], "mta1.example.com")
        self.assertEqual(set(self.toml_pools["main"]), set(self.lua))
        self.assertEqual(self.toml_pools["main"]["ip-1"].get("weight"), 2)

    def test_every_source_egresses_from_its_address_with_the_credentials(self):
        for name, fields in self.lua.items():
            with self.subTest(source=name):
                src = fields["socks5_proxy_source_address"]
                self.assertEqual(self.kumo(fields, src), src)

    def test_bind_to_an_address_that_is_no_source_is_refused(self):
        self.assertIsNone(self.kumo(self.lua["ip-1"], "192.0.2.12"))

    def test_wrong_password_is_refused(self):
        fields = dict(self.lua["ip-1"], socks5_proxy_password="secret")
        s = connect_to(self.proxy.addr, source="10.0.0.5")
        self.addCleanup(s.close)
        s.sendall(greeting((2,)) + userpass(fields["socks5_proxy_username"],
                                             fields["socks5_proxy_password"]))
        self.assertEqual(recv_exact(s, 2), b"\x05\x02")
        self.assertEqual(recv_exact(s, 2), b"\x01\x01")


if __name__ == "__main__":
    main()
