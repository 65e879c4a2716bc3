"""This node's site information, as the Handle.Net server describes its site (HS_SITE;
``GET /api/site``, handle-facts §1.4 and the JSON its 9.3.1 server answers). Pure.

One site, one server (each idres process of a node answers the same). The interfaces
are those a Handle client can use: HTTP or HTTPS on the HTTP port (the REST API, for
queries and administration). The server's key is the node's Ed25519 key as a JWK
(RFC 8037), in the ``{"format": "key", "value": JWK}`` form of Handle JSON.
"""

from __future__ import annotations

from typing import Any

PROTOCOL_VERSION = "2.11"  # the Handle.Net 9.x server's (Common.MAJOR/MINOR_VERSION)


def site_info(address: str, port: int, tls: bool, public_key: str, description: str,
              serial: int = 1) -> dict[str, Any]:
    """The ``site`` object: ``public_key`` is the node's key, unpadded base64url."""
    return {
        "version": 1,
        "protocolVersion": PROTOCOL_VERSION,
        "serialNumber": serial,
        "primarySite": True,
        "multiPrimary": False,
        "attributes": [{"name": "desc", "value": description}],
        "servers": [{
            "serverId": 1,
            "address": address,
            "publicKey": {"format": "key",
                          "value": {"kty": "OKP", "crv": "Ed25519", "x": public_key}},
            "interfaces": [{"query": True, "admin": True, "protocol": "HTTPS" if tls else "HTTP",
                            "port": port}],
        }],
    }
