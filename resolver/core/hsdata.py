"""The bytes of a handle value's data, and the JSON forms of structured data. Pure.

The Handle protocol carries a value's data as bytes; the REST API shows them in a JSON
form chosen by the value's type, as the Handle.Net server chooses it (handle-facts §1.2,
§1.3): ``admin`` (HS_ADMIN), ``vlist`` (HS_VLIST), ``site`` (HS_SITE, HS_SITE.PREFIX),
``key`` (HS_PUBKEY), ``string`` for UTF-8 text, ``base64`` for anything else.

The rule that makes a record read the same over both: a value's JSON form is used only
when encoding it again gives exactly the bytes it was read from (:func:`to_json`);
otherwise the bytes are kept as ``base64``. So bytes written over the native protocol
come back identical over REST and over the native protocol, whatever they hold.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from typing import Any

from resolver.core.errors import InvalidValue

SITE_TYPES = frozenset({"HS_SITE", "HS_SITE.PREFIX", "HS_SITE.6", "HS_NA_DELEGATE"})
_PROTOCOLS = {0: "UDP", 1: "TCP", 2: "HTTP", 3: "HTTPS"}
_PROTOCOL_CODES = {v: k for k, v in _PROTOCOLS.items()}
_HASH = {0: "prefix", 1: "suffix", 2: "handle"}
_HASH_CODES = {v: k for k, v in _HASH.items()}


class Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def num(self, n: int = 4) -> int:
        return int.from_bytes(self.take(n), "big", signed=n == 4)

    def blob(self) -> bytes:
        return self.take(self.num())

    def text(self) -> str:
        return self.blob().decode("utf-8")

    def count(self) -> int:
        n = self.num()
        if not 0 <= n <= len(self.data) - self.pos:
            raise ValueError("bad count")
        return n

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError("trailing bytes")


def blob(raw: bytes | str) -> bytes:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return len(data).to_bytes(4, "big") + data


def _i4(n: int) -> bytes:
    return n.to_bytes(4, "big", signed=True)


# --- admin, vlist ---------------------------------------------------------------------


def admin_bytes(value: dict[str, Any]) -> bytes:
    """An HS_ADMIN value: int2 permissions (bit 0 = add handle; the JSON string is MSB
    first), the admin's handle, its index."""
    return int(value["permissions"], 2).to_bytes(2, "big") + blob(value["handle"]) \
        + _i4(value["index"])


def _admin(data: bytes) -> dict[str, Any]:
    c = Cursor(data)
    perms = c.num(2)
    handle = c.text()
    index = c.num()
    c.end()
    return {"handle": handle, "index": index, "permissions": f"{perms & 0xfff:012b}"}


def vlist_bytes(value: list[dict[str, Any]]) -> bytes:
    return _i4(len(value)) + b"".join(blob(r["handle"]) + _i4(r["index"]) for r in value)


def _vlist(data: bytes) -> list[dict[str, Any]]:
    c = Cursor(data)
    out = [{"handle": c.text(), "index": c.num()} for _ in range(c.count())]
    c.end()
    return out


# --- site -------------------------------------------------------------------------------


def site_bytes(site: dict[str, Any]) -> bytes:
    """An HS_SITE value from its JSON form (the ``site`` object of ``GET /api/site``)."""
    major, _, minor = str(site.get("protocolVersion", "2.10")).partition(".")
    flags = (0x80 if site.get("primarySite", True) else 0) \
        | (0x40 if site.get("multiPrimary", False) else 0)
    out = [int(site.get("version", 1)).to_bytes(2, "big"), bytes([int(major), int(minor or 0)]),
           int(site.get("serialNumber", 1)).to_bytes(2, "big"), bytes([flags]),
           bytes([_HASH_CODES[site.get("hashOption", "handle")]]),
           blob(base64.b64decode(site.get("hashFilter", ""))),
           _i4(len(site.get("attributes", [])))]
    out += [blob(a["name"]) + blob(a["value"]) for a in site.get("attributes", [])]
    servers = site.get("servers", [])
    out.append(_i4(len(servers)))
    for server in servers:
        address = ipaddress.ip_address(server["address"])
        packed = address.packed if address.version == 6 else bytes(12) + address.packed
        key = server.get("publicKey") or {"format": "base64", "value": ""}
        out += [_i4(server["serverId"]), packed, blob(data_bytes("HS_PUBKEY", key))]
        interfaces = server.get("interfaces", [])
        out.append(_i4(len(interfaces)))
        for i in interfaces:
            kind = (1 if i.get("admin") else 0) | (2 if i.get("query") else 0)
            out.append(bytes([kind, _PROTOCOL_CODES[i["protocol"]]]) + _i4(i["port"]))
    return b"".join(out)


def _site(data: bytes) -> dict[str, Any]:
    c = Cursor(data)
    version = c.num(2)
    major, minor = c.take(1)[0], c.take(1)[0]
    serial = c.num(2)
    flags = c.take(1)[0]
    hash_option = _HASH[c.take(1)[0]]
    hash_filter = c.blob()
    attributes = [{"name": c.text(), "value": c.text()} for _ in range(c.count())]
    servers = []
    for _ in range(c.count()):
        server_id = c.num()
        raw = c.take(16)
        shown = str(ipaddress.IPv4Address(raw[12:]) if raw[:12] == bytes(12)
                    else ipaddress.IPv6Address(raw))
        key = to_json("HS_PUBKEY", c.blob())
        interfaces = []
        for _ in range(c.count()):
            kind, proto = c.take(1)[0], c.take(1)[0]
            interfaces.append({"query": bool(kind & 2), "admin": bool(kind & 1),
                               "protocol": _PROTOCOLS[proto], "port": c.num()})
        servers.append({"serverId": server_id, "address": shown, "publicKey": key,
                        "interfaces": interfaces})
    c.end()
    site: dict[str, Any] = {"version": version, "protocolVersion": f"{major}.{minor}",
                            "serialNumber": serial, "primarySite": bool(flags & 0x80),
                            "multiPrimary": bool(flags & 0x40)}
    if hash_option != "handle" or hash_filter:
        site["hashOption"] = hash_option
    if hash_filter:
        site["hashFilter"] = base64.b64encode(hash_filter).decode()
    site["attributes"] = attributes
    site["servers"] = servers
    return site


# --- public keys (HS_PUBKEY) ------------------------------------------------------------


def b64u(n: int) -> str:
    raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64u(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def _bigint(n: int) -> bytes:
    """As Java's BigInteger.toByteArray: two's complement, a sign byte when needed."""
    return blob(n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


_KEY_PARTS = {"RSA_PUB_KEY": ("RSA", ("e", "n")), "DSA_PUB_KEY": ("DSA", ("q", "p", "g", "y"))}
_KTY = {kty: (name, parts) for name, (kty, parts) in _KEY_PARTS.items()}


def key_bytes(jwk: dict[str, Any]) -> bytes:
    """An HS_PUBKEY value from a JWK (RSA: n, e; DSA: p, q, g, y): the key type, int2
    flags 0, then the numbers as the Handle.Net software writes them (an RSA key with
    four zero bytes after them: its buffer has room for four arrays, it writes three)."""
    name, parts = _KTY[jwk["kty"]]
    tail = bytes(4) if name == "RSA_PUB_KEY" else b""
    return blob(name) + bytes(2) + b"".join(_bigint(unb64u(jwk[p])) for p in parts) + tail


def parse_key(data: bytes) -> dict[str, Any]:
    """The JWK of HS_PUBKEY bytes, read as the Handle.Net software reads them (unsigned
    numbers, bytes after them ignored; :func:`to_json` uses the JWK only when encoding it
    gives the same bytes back).

    :raises ValueError, KeyError, UnicodeDecodeError: not an RSA or DSA key."""
    c = Cursor(data)
    kty, parts = _KEY_PARTS[c.text()]
    c.num(2)
    return {"kty": kty, **{p: b64u(int.from_bytes(c.blob(), "big")) for p in parts}}


# --- the two directions -----------------------------------------------------------------

_STRUCTURED: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {"admin": (admin_bytes, _admin), "vlist": (vlist_bytes, _vlist),
               "site": (site_bytes, _site), "key": (key_bytes, parse_key)}
_FORM_OF_TYPE = {"HS_ADMIN": "admin", "HS_VLIST": "vlist", "HS_PUBKEY": "key",
                 **{t: "site" for t in SITE_TYPES}}


def data_bytes(type_: str, data: dict[str, Any]) -> bytes:
    """The bytes of a value's data from its JSON form.

    :raises InvalidValue: a structured value that cannot be encoded."""
    fmt, value = data["format"], data["value"]
    if fmt == "string":
        return str(value).encode("utf-8", "surrogatepass")
    if fmt == "base64":
        return base64.b64decode(value)
    try:
        return _STRUCTURED[fmt][0](value)
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise InvalidValue(f"{type_} data in the {fmt!r} form cannot be encoded: "
                           f"{exc.__class__.__name__} {exc}") from None


def to_json(type_: str, data: bytes) -> dict[str, Any]:
    """The JSON form of a value's data: structured for the Handle System's types when it
    gives the same bytes back, ``string`` for UTF-8 text, else ``base64``."""
    fmt = _FORM_OF_TYPE.get(type_.upper())
    if fmt is not None:
        try:
            value = _STRUCTURED[fmt][1](data)
            if _STRUCTURED[fmt][0](value) == data:
                return {"format": fmt, "value": value}
        except (ValueError, KeyError, UnicodeDecodeError, IndexError):
            pass
    if b"\x00" not in data:
        try:
            return {"format": "string", "value": data.decode("utf-8")}
        except UnicodeDecodeError:
            pass
    return {"format": "base64", "value": base64.b64encode(data).decode("ascii")}
