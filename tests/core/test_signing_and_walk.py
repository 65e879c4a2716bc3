"""Signatures and the referral walk, without I/O."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from resolver.core import signing
from resolver.core.delegation import Delegation, Server, Zone
from resolver.core.errors import RecursionLimit
from resolver.core.identifier import parse_prefix
from resolver.recursion.walk import ROOT, Walk


def test_sign_and_verify_and_every_way_to_fail() -> None:
    key = Ed25519PrivateKey.generate()
    pub = signing.public_key_text(key)
    statement = {"kind": "answer", "handle": "88.1/A", "values": [{"index": 1}], "iat": 1,
                 "exp": 2_000_000_000}
    sig = signing.sign(key, statement)
    signing.verify(pub, statement, sig, now=100)
    assert signing.canonical({"b": 1, "a": "订"}) == '{"a":"订","b":1}'.encode()
    with pytest.raises(signing.BadSignature, match="does not verify"):
        signing.verify(pub, {**statement, "values": [{"index": 2}]}, sig, now=100)
    other = signing.public_key_text(Ed25519PrivateKey.generate())
    with pytest.raises(signing.BadSignature, match="does not verify"):
        signing.verify(other, statement, sig, now=100)
    with pytest.raises(signing.BadSignature, match="expired"):
        signing.verify(pub, statement, sig, now=2_000_000_001)
    with pytest.raises(signing.BadSignature):
        signing.verify(pub, statement, "!!!", now=100)
    with pytest.raises(signing.BadSignature, match="32 bytes"):
        signing.load_public_key(signing.b64(b"short"))


def d(prefix: str) -> Delegation:
    return Delegation(prefix, (Server(f"http://{prefix}", "k"),), 60)


def test_walk_follows_longer_referrals_and_stops_loops_and_depth() -> None:
    walk = Walk("88.100.7/X", Delegation(ROOT, (Server("http://root", "k"),), 0), max_depth=3)
    walk.on_referral(d("88.100"))
    walk.on_referral(d("88.100.7"))
    assert walk.servers[0].url == "http://88.100.7"
    with pytest.raises(RecursionLimit, match="loop"):
        walk.on_referral(d("88.100"))
    with pytest.raises(RecursionLimit, match="does not cover"):
        walk.on_referral(d("88.200"))
    deep = Walk("1.2.3.4.5/X", d("1"), max_depth=2)
    deep.on_referral(d("1.2"))
    deep.on_referral(d("1.2.3"))
    with pytest.raises(RecursionLimit, match="more than 2 referrals"):
        deep.on_referral(d("1.2.3.4"))


def test_zone_longest_prefix_wins() -> None:
    zone = Zone({"88", "88.100", "88.100.7"}, {"88.100": d("88.100"), "88.100.7": d("88.100.7")})
    assert zone.classify(parse_prefix("88.100.7.1"))[1] == d("88.100.7")
    assert zone.classify(parse_prefix("88.100.9"))[1] == d("88.100")
    assert zone.classify(parse_prefix("88.5")) == ("local", None)
    assert zone.classify(parse_prefix("99.1")) == ("foreign", None)
    assert zone.classify(parse_prefix("0.OPERATOR")) == ("local", None)
