"""The registry's commands (``idres operator ...``, ``idres prefix ...``): a table.

Each :class:`Command` declares its arguments and a coroutine that runs on an open
:class:`Db` (the command line opens it, starting the embedded PostgreSQL when needed,
and its writes return once every running resolver applied them) and returns
``(data, text)``: what ``--json`` prints, and what a person reads otherwise.
Whoever can reach the database is in charge: commands act as an administrator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from registry import accounts, challenges, cli_ops, cli_records, cli_sharing, delegations, prefixes, tokens
from registry.cli_ops import table
from registry.cli_table import Command, Result, Run, local_actor
from registry.store import Db
from resolver.core.delegation import Delegation
from resolver.core.errors import BadRequest
from resolver.core.identifier import parse_prefix


async def operator_create(db: Db, args: argparse.Namespace) -> Result:
    new = await accounts.create_operator(db, local_actor(), args.name, args.identity,
                                         is_admin=args.admin)
    p = new.principal
    return ({"name": p.name, "identity": p.identity, "admin": p.is_admin,
             "secret": new.secret, "token": new.token},
            f"operator {p.name} created{' (administrator)' if p.is_admin else ''}\n"
            f"  identity: {p.identity}\n"
            f"  secret:   {new.secret}\n"
            f"  token:    {new.token}\n"
            "The secret and the token are shown only now; idres keeps only their hashes.")


async def operator_list(db: Db, args: argparse.Namespace) -> Result:
    ops = await accounts.list_operators(db.pool)
    return {"operators": ops}, table(["NAME", "IDENTITY", "ROLE", "DISABLED"], [
        [o["name"], o["identity"], "admin" if o["admin"] else "", o["disabled"] or ""]
        for o in ops]) if ops else "no operators"


async def operator_token(db: Db, args: argparse.Namespace) -> Result:
    owner = await accounts.find_operator(db.pool, args.name)
    token_id, token = await tokens.create_token(
        db, local_actor(), owner, args.label, tokens.expiry(
            args.expires, args.days * 86400 if args.days is not None else None))
    return ({"operator": owner.name, "id": token_id, "token": token},
            f"token {token_id} for {owner.name}: {token}\n"
            "It is shown only now; idres keeps only its hash.")


async def operator_secret(db: Db, args: argparse.Namespace) -> Result:
    owner = await accounts.find_operator(db.pool, args.name)
    secret = await accounts.reset_secret(db, local_actor(), owner)
    return ({"name": owner.name, "identity": owner.identity, "secret": secret},
            f"new secret for {owner.name} ({owner.identity}): {secret}\n"
            "It is shown only now; the old secret no longer works.")


async def operator_key(db: Db, args: argparse.Namespace) -> Result:
    """An HS_PUBKEY value on the operator's identity: Handle clients prove it with the
    private key (docs/handle-protocol.md)."""
    async with db.pool.acquire() as conn:
        owner = await accounts.find_operator(conn, args.name)
    try:
        pem = args.file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read the public key {args.file}: {exc}") from None
    identity = await challenges.add_public_key(db, local_actor(), owner, args.index, pem)
    return ({"name": owner.name, "identity": identity},
            f"{owner.name} now also proves identity {identity} with that key's private key")


async def operator_tokens(db: Db, args: argparse.Namespace) -> Result:
    owner = await accounts.find_operator(db.pool, args.name)
    listed = await tokens.list_tokens(db.pool, local_actor(), owner)
    return {"operator": owner.name, "tokens": listed}, table(
        ["ID", "CREATED", "STATE", "EXPIRES", "LAST USED", "LABEL"],
        [[t["id"], t["created"], "revoked " + t["revoked"] if t["revoked"] else "valid",
          t["expires"] or "never", t["last_used"] or "never", t["label"]] for t in listed]
    ) if listed else f"{owner.name} has no tokens"


async def operator_disable(db: Db, args: argparse.Namespace) -> Result:
    done = await accounts.set_disabled(db, local_actor(), args.name, True)
    return done, f"operator {done['operator']} disabled: its tokens and secret are refused"


async def operator_enable(db: Db, args: argparse.Namespace) -> Result:
    done = await accounts.set_disabled(db, local_actor(), args.name, False)
    return done, f"operator {done['operator']} enabled"


async def operator_revoke(db: Db, args: argparse.Namespace) -> Result:
    revoked = await tokens.revoke_token(db, local_actor(), args.token_id)
    return ({"token": revoked},
            f"token {revoked['id']} of {revoked['operator']} revoked at {revoked['revoked']}")


async def prefix_create(db: Db, args: argparse.Namespace) -> Result:
    prefix = parse_prefix(args.prefix)
    owner = await prefixes.create_prefix(db, local_actor(), prefix, args.owner)
    return ({"prefix": prefix.text, "owner": owner.name},
            f"prefix {prefix.text} allocated to {owner.name}")


async def prefix_delegate(db: Db, args: argparse.Namespace) -> Result:
    if len(args.server) != len(args.key):
        raise BadRequest("give one --key for every --server")
    binaries = args.binary + [None] * (len(args.server) - len(args.binary))
    servers = delegations.parse_servers([
        {"url": u, "key": k, **({"binary": b} if b else {})}
        for u, k, b in zip(args.server, args.key, binaries)])
    d = Delegation(parse_prefix(args.prefix).text, servers, args.ttl)
    await delegations.delegate(db, local_actor(), d)
    return d.to_json(), f"prefix {d.prefix} delegated to " + ", ".join(s.url for s in servers)


async def prefix_list(db: Db, args: argparse.Namespace) -> Result:
    rows = await prefixes.list_prefixes(db.pool)
    return {"prefixes": rows}, "\n".join(
        f"{r['prefix']:<24} owner {r['owner']}" for r in rows) or "no prefixes"


async def prefix_template(db: Db, args: argparse.Namespace) -> Result:
    prefix = parse_prefix(args.prefix)
    template = None if args.template in ("", "none") else args.template
    key, complete = await prefixes.require_template(db, local_actor(), prefix, template,
                                                    args.force)
    return ({"prefix": prefix.text, "template": key, "complete": complete},
            f"records under {prefix.text} must follow {key}" if key else
            f"records under {prefix.text} need follow no template")


def _template_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix")
    p.add_argument("template", help="the template's identifier, or none")
    p.add_argument("--force", action="store_true",
                   help="even though records there do not follow it (new writes only)")


def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--identity", help="admin identity INDEX:HANDLE (default 300:0.OPERATOR/NAME)")
    p.add_argument("--admin", action="store_true", help="may write anywhere and manage operators")


def _operator_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="operator name or identity")


def _positional(p: argparse.ArgumentParser, name: str, kind: type) -> None:
    p.add_argument(name, type=kind)


def _key_args(p: argparse.ArgumentParser) -> None:
    _operator_arg(p)
    p.add_argument("file", type=Path, help="PEM public key (RSA or DSA)")
    p.add_argument("--index", type=int, default=301, help="its index in the identity handle "
                   "(default 301; 300 is the secret's, 100 the HS_ADMIN)")


def _token_args(p: argparse.ArgumentParser) -> None:
    _operator_arg(p)
    p.add_argument("--label", default="", help="what the token is for (shown in lists)")
    p.add_argument("--expires", help="ISO 8601 time it stops working (default: never)")
    p.add_argument("--days", type=int, help="or: days from now it stops working")


def _prefix_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix")
    p.add_argument("--owner", required=True, help="operator name or identity")


def _delegate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix")
    p.add_argument("--server", action="append", required=True,
                   help="base URL of a node serving the prefix (repeatable)")
    p.add_argument("--key", action="append", required=True,
                   help="that node's public key, from its `idres node key` (one per --server)")
    p.add_argument("--binary", action="append", default=[],
                   help="that node's binary-protocol host:port (optional, in --server order)")
    p.add_argument("--ttl", type=int, default=86400, help="seconds (default 86400)")


COMMANDS: tuple[Command, ...] = (
    Command("operator", "create", "create an operator; prints its secret and a token once",
            operator_create, _create_args),
    Command("operator", "list", "list operators", operator_list),
    Command("operator", "token", "issue a new bearer token to an operator; prints it once",
            operator_token, _token_args),
    Command("operator", "reset-secret", "give an operator a new secret; prints it once",
            operator_secret, _operator_arg),
    Command("operator", "key", "add a public key (RSA or DSA) to an operator's identity, "
            "for Handle challenge-response", operator_key, _key_args),
    Command("operator", "tokens", "list an operator's tokens (ids, labels, revocations)",
            operator_tokens, _operator_arg),
    Command("operator", "revoke-token", "revoke a token by its id; it stops working at once",
            operator_revoke, lambda p: _positional(p, "token_id", int)),
    Command("operator", "disable", "refuse an operator's tokens and secret from now on",
            operator_disable, _operator_arg),
    Command("operator", "enable", "let a disabled operator in again", operator_enable,
            _operator_arg),
    Command("prefix", "create", "allocate a prefix to an operator", prefix_create, _prefix_args),
    Command("prefix", "delegate", "delegate a prefix to other nodes (referrals)",
            prefix_delegate, _delegate_args),
    Command("prefix", "list", "list prefixes", prefix_list),
    Command("prefix", "template", "require a template of every record under a prefix",
            prefix_template, _template_args),
    *cli_records.COMMANDS,
    *cli_sharing.COMMANDS,
    *cli_ops.COMMANDS,
)
GROUPS = {"operator": "manage operators", "prefix": "manage prefixes", **cli_records.GROUPS,
          **cli_sharing.GROUPS, **cli_ops.GROUPS}
__all__ = ["COMMANDS", "GROUPS", "Command", "Result", "Run"]
