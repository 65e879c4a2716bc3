"""b2handle (EUDAT's client before pyhandle, 1.1.1), unchanged, against a running idres:
it reads and writes, and a wrong secret is a HandleAuthenticationError as it expects of
the Handle.Net server."""

from __future__ import annotations

import pytest
import requests
from b2handle.handleclient import EUDATHandleClient
from b2handle.handleexceptions import HandleAuthenticationError

from tests.conftest import Tenant


def test_b2handle_writes_reads_and_reports_a_wrong_secret(tenant: Tenant) -> None:
    good = EUDATHandleClient.instantiate_with_username_and_password(
        tenant.url, tenant.op.identity, tenant.op.secret, HTTPS_verify=False)
    h = f"{tenant.prefix}/B2-1"
    assert good.register_handle(h, "https://eudat.example/1") == h
    assert good.get_value_from_handle(h, "URL") == "https://eudat.example/1"
    good.modify_handle_value(h, URL="https://eudat.example/2")
    assert EUDATHandleClient.instantiate_for_read_access(tenant.url).get_value_from_handle(
        h, "URL") == "https://eudat.example/2"

    bad = EUDATHandleClient.instantiate_with_username_and_password(
        tenant.url, tenant.op.identity, "not-the-secret", HTTPS_verify=False)
    for call in (lambda: bad.register_handle(f"{tenant.prefix}/B2-NO", "https://x"),
                 lambda: bad.modify_handle_value(h, URL="https://evil.example"),
                 lambda: bad.delete_handle(h)):
        with pytest.raises(HandleAuthenticationError):
            call()
    assert requests.get(tenant.handle_url("B2-NO")).status_code == 404
    assert good.get_value_from_handle(h, "URL") == "https://eudat.example/2"
