"""pyhandle (from PyPI, unchanged) against a running idres: Handle clients work as they are."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from pyhandle.handleclient import PyHandleClient
from pyhandle.handleexceptions import (
    GenericHandleError,
    HandleAlreadyExistsException,
    HandleAuthenticationError,
    HandleNotFoundException,
)

from tests.conftest import Server, Tenant


@pytest.fixture
def client(tenant: Tenant) -> Any:
    return PyHandleClient("rest").instantiate_with_username_and_password(
        tenant.url, tenant.op.identity, tenant.op.secret, HTTPS_verify=False)


def test_resolve_read_only(tenant: Tenant) -> None:
    requests.put(tenant.handle_url("R1"), headers=tenant.op.bearer, json=[
        {"index": 1, "type": "URL", "data": "https://erp.example/asset/R1"},
        {"index": 2, "type": "asset.finance_code", "data": "FA-2024-0042"}])
    reader = PyHandleClient("rest").instantiate_for_read_access(handle_server_url=tenant.url)
    record = reader.retrieve_handle_record(f"{tenant.prefix}/R1")
    assert record == {"URL": "https://erp.example/asset/R1", "asset.finance_code": "FA-2024-0042"}
    assert reader.get_value_from_handle(f"{tenant.prefix}/R1", "URL").endswith("/R1")
    assert reader.retrieve_handle_record(f"{tenant.prefix}/none") is None


def test_register_modify_delete_values_and_delete(client: Any, tenant: Tenant, sql: Any) -> None:
    h = f"{tenant.prefix}/PH-1"
    assert client.register_handle(h, "https://mes.example/o/1", EMAIL="ops@example.org") == h
    with pytest.raises(HandleAlreadyExistsException):
        client.register_handle(h, "https://mes.example/o/other")
    record = client.retrieve_handle_record(h)
    assert record["URL"] == "https://mes.example/o/1" and record["EMAIL"] == "ops@example.org"
    assert "HS_ADMIN" in record     # pyhandle adds one; stored as given
    client.modify_handle_value(h, EMAIL="mes@example.org")
    client.modify_handle_value(h, ttl=3600, STATUS="in-production")   # adds a value
    record = client.retrieve_handle_record(h)
    assert record["EMAIL"] == "mes@example.org" and record["STATUS"] == "in-production"
    json_record = client.retrieve_handle_record_json(h)
    status = next(v for v in json_record["values"] if v["type"] == "STATUS")
    assert status["ttl"] == 3600
    client.delete_handle_value(h, "EMAIL")
    assert "EMAIL" not in client.retrieve_handle_record(h)
    client.delete_handle(h)
    assert client.retrieve_handle_record(h) is None
    with pytest.raises(HandleNotFoundException):
        client.delete_handle(h)
    actions = [r["action"] for r in sql("SELECT action FROM audit WHERE handle = $1 ORDER BY id", h)]
    assert actions[0] == "create" and actions[-1] == "delete"


def test_generate_and_register(client: Any, tenant: Tenant) -> None:
    h = client.generate_and_register_handle(tenant.prefix, "https://wms.example/b/7")
    assert h.startswith(tenant.prefix + "/")
    assert client.get_value_from_handle(h, "URL") == "https://wms.example/b/7"


def test_wrong_password_is_an_authentication_error_and_writes_nothing(tenant: Tenant) -> None:
    # As on the Handle.Net server (9.3.1, measured): a wrong secret is 401, which pyhandle
    # raises as HandleAuthenticationError on every write it makes.
    bad = PyHandleClient("rest").instantiate_with_username_and_password(
        tenant.url, tenant.op.identity, "not-the-secret", HTTPS_verify=False)
    h = f"{tenant.prefix}/NOPE"
    with pytest.raises(HandleAuthenticationError):
        bad.register_handle(h, "https://x")
    good = PyHandleClient("rest").instantiate_with_username_and_password(
        tenant.url, tenant.op.identity, tenant.op.secret, HTTPS_verify=False)
    good.register_handle(f"{tenant.prefix}/KEPT", "https://kept")
    for call in (lambda: bad.modify_handle_value(f"{tenant.prefix}/KEPT", URL="https://y"),
                 lambda: bad.delete_handle_value(f"{tenant.prefix}/KEPT", "URL"),
                 lambda: bad.delete_handle(f"{tenant.prefix}/KEPT")):
        with pytest.raises(HandleAuthenticationError):
            call()
    assert requests.get(tenant.handle_url("NOPE")).status_code == 404
    assert good.get_value_from_handle(f"{tenant.prefix}/KEPT", "URL") == "https://kept"


def test_unknown_username_handle_is_refused_at_start(server: Server, tenant: Tenant) -> None:
    from pyhandle.handleexceptions import HandleNotFoundException as NotFound

    with pytest.raises(NotFound):
        PyHandleClient("rest").instantiate_with_username_and_password(
            server.url, f"300:{tenant.prefix}/NOBODY", "x", HTTPS_verify=False)
    # under a prefix this node does not serve: "that prefix doesn't live here" (400, rc 301),
    # which pyhandle reports as it does for the Handle.Net server
    with pytest.raises(GenericHandleError, match="responseCode.:301"):
        PyHandleClient("rest").instantiate_with_username_and_password(
            server.url, "300:88.0.0/NOBODY", "x", HTTPS_verify=False)
