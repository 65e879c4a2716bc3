"""The registry's side of the Handle native protocol's writes (resolver/native/admin.py):
challenges held and taken, identities proven, and each write done by the same function
as its REST counterpart (registry/store/records.py), so ownership, templates, the audit
trail and the acknowledgement of the write are the same whatever the protocol."""

from __future__ import annotations

from typing import Any

from registry import challenges
from registry.ownership import check_homed, require
from registry.permissions import Principal
from registry.store import Db, records
from registry.store.queries import indexes_of, list_handles
from resolver.core.errors import IdentifierExists, IdentifierNotFound, ValuesNotFound
from resolver.core.identifier import parse, parse_prefix


class NativeWrites:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def check(self, op: int, text: str, indexes: frozenset[int], overwrite: bool) -> None:
        """What a write's answer needs no identity for, checked before its challenge:
        the prefix is served here; a create (100) without overwrite finds no record; a
        modify (104) finds the record and every index.

        :raises PrefixNotHomed, IdentifierExists, IdentifierNotFound, ValuesNotFound:"""
        if op == 105:   # LIST_HANDLES of 0.NA/<prefix>: that prefix is served here
            async with self.db.pool.acquire() as conn:
                await check_homed(conn, [parse_prefix(text.partition("/")[2] or text)])
            return
        ident = parse(text)
        async with self.db.pool.acquire() as conn:
            await check_homed(conn, [ident.prefix])  # network op
        present = await indexes_of(self.db.pool, ident.key)  # network op
        if op == 100 and not overwrite and present is not None:
            raise IdentifierExists(f"handle {text} already exists")
        if op == 104:
            if present is None:
                raise IdentifierNotFound(f"handle {ident.key} not found")
            missing = sorted(indexes - present)
            if missing:
                raise ValuesNotFound(f"handle {ident.key} has no values at index {missing} "
                                     "to modify")

    async def hold(self, nonce: bytes, request: bytes) -> int:
        return await challenges.hold(self.db.pool, nonce, request)  # network op

    async def take(self, session_id: int) -> tuple[bytes, bytes] | None:
        return await challenges.take(self.db.pool, session_id)  # network op

    async def prove(self, handle: str, index: int, kind: str, proof: bytes,
                    data: bytes) -> Principal:
        return await challenges.prove(self.db.pool, handle, index, kind, proof, data,
                                      self.db.seal_key)  # network op

    async def create(self, who: Principal, text: str, values: list[dict[str, Any]],
                     overwrite: bool) -> bool:
        return await records.put_record(self.db, who, parse(text), values,
                                        overwrite=overwrite)  # network op

    async def put_values(self, who: Principal, text: str, values: list[dict[str, Any]],
                         overwrite: bool, existing: bool) -> None:
        """ADD_VALUE, or MODIFY_VALUE (``existing``: every index must be there already,
        else "values not found", as the Handle.Net server answers)."""
        ident = parse(text)
        if existing:
            present = await indexes_of(self.db.pool, ident.key)  # network op
            if present is None:
                raise IdentifierNotFound(f"handle {ident.key} not found")
            missing = sorted({v["index"] for v in values} - present)
            if missing:
                raise ValuesNotFound(f"handle {ident.key} has no values at index {missing} "
                                     "to modify")
        await records.put_values(self.db, who, ident, values,
                                 overwrite=overwrite)  # network op

    async def list(self, who: Principal, prefix_handle: str) -> list[str]:
        """LIST_HANDLES: the identifiers directly under the prefix of ``0.NA/<prefix>``,
        for an operator who administers it (as ``GET /api/handles?prefix=`` answers).

        :raises InsufficientPermissions, InvalidPrefix:"""
        prefix = parse_prefix(prefix_handle.partition("/")[2] if "/" in prefix_handle
                              else prefix_handle)
        names: list[str] = []
        async with self.db.pool.acquire() as conn:
            await require(conn, who, [prefix], "list")  # network op
            page = 0
            while True:
                _, got = await list_handles(conn, prefix, page, 10_000)  # network op
                names += got
                if len(got) < 10_000:
                    return names
                page += 1

    async def remove(self, who: Principal, text: str, indexes: frozenset[int]) -> None:
        await records.delete(self.db, who, parse(text), indexes)  # network op

    async def delete(self, who: Principal, text: str) -> None:
        await records.delete(self.db, who, parse(text))  # network op
