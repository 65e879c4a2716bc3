"""--tls-cert/--tls-key: HTTPS on the same port, writes over TLS (as the Handle API expects)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Operator, Server, new_operator


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_serving_and_authenticated_writes(pg_dsn: str, tmp_path: Path, server: Server,
                                                admin: Operator) -> None:
    cert, key = self_signed(tmp_path)
    srv = Server(pg_dsn, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https")
    try:
        srv.wait_ready(verify=str(cert))
        assert f"listening on https://127.0.0.1:{srv.port}" in srv.output()
        op = new_operator(server, admin, "tls-op")
        requests.post(f"{server.url}/api/prefixes", json={"prefix": "88.443", "owner": op.name},
                      headers=admin.bearer)
        r = requests.put(f"{srv.url}/api/handles/88.443/T", auth=op.basic, verify=str(cert),
                         json=[{"index": 1, "type": "URL", "data": "https://example.org/t"}])
        assert r.status_code == 201, r.text
        body: Any = requests.get(f"{srv.url}/api/handles/88.443/T", verify=str(cert)).json()
        assert body["values"][0]["data"]["value"] == "https://example.org/t"
    finally:
        assert srv.stop() == 0, srv.output()


def test_tls_flags_go_together(pg_dsn: str, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    cert, _ = self_signed(tmp_path)
    out = run_cli("serve", "--tls-cert", str(cert), dsn=pg_dsn, check=False)
    assert out.returncode == 2 and "--tls-cert and --tls-key go together" in out.stderr
