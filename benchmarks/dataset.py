"""A deterministic, realistic data set: identifier i always has the same record.

Identifiers spread over eight enterprise prefixes under two secondary nodes; the
suffix kind (order, batch, asset, device) follows i; each record has 2-6 values.
Size: 200-600 bytes as registered (the record's JSON in the bulk body), 350-900
bytes as a Handle JSON answer (each value adds ~100 bytes of Handle framing: index, type,
format, ttl, timestamp). ``wrk`` scripts rebuild identifier i from
the same two tables (see ``lua_tables``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PREFIXES = ["88.100.1", "88.100.2", "88.100.3", "88.100.4",
            "88.200.1", "88.200.2", "88.200.3", "88.200.4"]
KINDS = ["ORDER", "BATCH", "ASSET", "DEV"]

_TYPES = {
    "ORDER": [("order.product", "gearbox GX-{n}, cast-iron housing, ratio 1:{q}"), ("order.quantity", "{q}"),
              ("order.status", "released"), ("order.line", "LINE-{l}"),
              ("order.customer", "88.100.9/CUST-{c}")],
    "BATCH": [("batch.material", "stainless steel 30{l}, cold rolled sheet, {q} kg lot"), ("batch.supplier", "88.200.9/SUP-{c}"),
              ("batch.weight_kg", "{q}"), ("batch.produced", "2026-0{l}-1{l}T08:00:00Z"),
              ("batch.certificate", "CERT-{n}-{c}")],
    "ASSET": [("asset.finance_code", "FA-2026-{n}, depreciation 10 years straight line"), ("asset.equipment_code", "EQ-CNC-{c}"),
              ("asset.resource_code", "RES-LINE{l}-CELL{q}"), ("asset.location", "plant {l}"),
              ("asset.vendor", "88.200.9/VEND-{c}")],
    "DEV": [("device.kind", "smoke detector, photoelectric, battery backed, {l} sensors"), ("device.model", "SD-{c}"),
            ("device.location", "88.100.7/BLDG-{l}-UNIT-{q}"), ("device.firmware", "3.{l}.{c}"),
            ("device.installed", "2026-0{l}-0{l}")],
}


def identifier(i: int) -> str:
    return f"{PREFIXES[i % len(PREFIXES)]}/{KINDS[i % len(KINDS)]}-{i:07d}"


def values(i: int) -> list[dict[str, Any]]:
    h = (i * 2654435761) & 0xFFFFFFFF                 # a cheap, fixed scramble of i
    kind = KINDS[i % len(KINDS)]
    count = 2 + (h >> 7) % 5                          # 2..6 values
    out: list[dict[str, Any]] = [{"index": 1, "type": "URL",
                                  "data": f"https://{kind.lower()}.example.com/resolve/"
                                          f"{identifier(i)}", "ttl": 86400}]
    fill = {"n": f"{i:07d}", "q": str(1 + (h >> 3) % 4999), "l": str(1 + (h >> 11) % 8),
            "c": str(100 + (h >> 17) % 899)}
    for idx, (t, fmt) in enumerate(_TYPES[kind][:count - 1], start=2):
        out.append({"index": idx, "type": t, "data": fmt.format(**fill), "ttl": 86400})
    return out


def records(start: int, stop: int) -> Iterator[dict[str, Any]]:
    for i in range(start, stop):
        yield {"handle": identifier(i), "values": values(i)}


def lua_tables() -> str:
    """The two tables a wrk script needs to rebuild ``identifier(i)``."""
    prefixes = ", ".join(f'"{p}"' for p in PREFIXES)
    kinds = ", ".join(f'"{k}"' for k in KINDS)
    return (f"prefixes = {{{prefixes}}}\nkinds = {{{kinds}}}\n"
            "function ident(i)\n"
            "  return prefixes[(i % #prefixes) + 1] .. '/' .. kinds[(i % #kinds) + 1] .. '-' "
            ".. string.format('%07d', i)\nend\n")


# typed assets (benchmarks.records): three codes in one record, as an asset registry keeps
ASSET_ITEMS = [
    {"type": "URL", "datatype": "url", "required": True},
    {"type": "asset.finance_code", "required": True, "pattern": "FA-[0-9]{8}"},
    {"type": "asset.equipment_code", "required": True, "pattern": "EQ-[0-9]{8}"},
    {"type": "asset.resource_code", "max_length": 40},
    {"type": "asset.location", "max_length": 200},
    {"type": "asset.installed", "datatype": "date"},
    {"type": "asset.value", "datatype": "decimal", "minimum": 0},
    {"type": "asset.status", "datatype": "enum", "values": ["in-service", "spare", "scrapped"]},
]


def asset_template(handle: str, indexed: bool) -> dict[str, Any]:
    """The asset template; ``indexed``: the finance and equipment codes are unique items."""
    items = [dict(item, unique=True) if indexed and item["type"] in
             ("asset.finance_code", "asset.equipment_code") else item for item in ASSET_ITEMS]
    return {"handle": handle, "description": "an asset (benchmark)", "items": items,
            "publish": True}


def asset(i: int, prefix: str, template: str | None) -> dict[str, Any]:
    """Asset i under ``prefix``: 8 values, ~600 bytes as registered."""
    h = (i * 2654435761) & 0xFFFFFFFF
    ident = f"{prefix}/ASSET-{i:08d}"
    data = [("URL", f"https://asset.example.com/resolve/{ident}"),
            ("asset.finance_code", f"FA-{i:08d}"), ("asset.equipment_code", f"EQ-{i:08d}"),
            ("asset.resource_code", f"RES-LINE{1 + h % 8}-CELL{1 + (h >> 3) % 40}"),
            ("asset.location", f"plant {1 + (h >> 9) % 4}, hall {chr(65 + (h >> 11) % 6)}"),
            ("asset.installed", f"202{(h >> 13) % 7}-0{1 + (h >> 16) % 9}-1{(h >> 19) % 9}"),
            ("asset.value", f"{(h >> 5) % 250000}.50"), ("asset.status", "in-service")]
    rec: dict[str, Any] = {"handle": ident, "values": [
        {"index": k, "type": t, "data": d, "ttl": 86400} for k, (t, d) in enumerate(data, 1)]}
    if template:
        rec["template"] = template
    return rec
