"""Identifier parsing: pure, no event loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.core.errors import InvalidIdentifier, InvalidPrefix
from resolver.core.identifier import (
    MAX_IDENTIFIER_BYTES,
    decode_path,
    parse,
    parse_prefix,
    parse_raw,
)


def test_split_at_first_slash_keys_fold_ascii_case_spellings_keep_it() -> None:
    ident = parse("88.abc.7/Order/2024/0001")
    assert ident.prefix.text == "88.ABC.7"
    assert ident.suffix == "Order/2024/0001"
    assert ident.key == "88.ABC.7/ORDER/2024/0001"         # as Handle.Net: case-insensitive
    assert ident.spelling == "88.ABC.7/Order/2024/0001"
    assert parse("88.1/straße-é").key == "88.1/STRAßE-é"   # ASCII only: no Unicode folding
    from resolver.core.identifier import case_sensitive, set_case_sensitive
    assert not case_sensitive()
    set_case_sensitive(True)
    try:   # the node setting (made once at start-up): suffixes as written
        assert parse("88.abc.7/Order/2024/0001").key == "88.ABC.7/Order/2024/0001"
    finally:
        set_case_sensitive(False)


def test_prefix_lineage_and_parent() -> None:
    p = parse_prefix("88.100.7")
    assert [x.text for x in p.lineage()] == ["88.100.7", "88.100", "88"]
    assert p.parent() == parse_prefix("88.100")
    assert parse_prefix("88").parent() is None
    assert p.depth == 3


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("88.100.7", "no '/'"),
    ("88.100.7/", "empty suffix"),
    ("/ORDER", "prefix is empty"),
    ("88..7/X", "empty segment"),
    ("88.1 0/X", "contains ' '"),
    ("88.100/A\x00B", "control character U+0000"),
    ("88.100/A\nB", "control character U+000A"),
    ("88.100/A\x7fB", "U+007F"),
    ("88.100/" + "x" * MAX_IDENTIFIER_BYTES, "longer than 2048 bytes"),
])
def test_malformed_identifiers_are_rejected_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(InvalidIdentifier) as err:
        parse(text)
    assert fragment in err.value.message
    assert err.value.response_code == 102 and err.value.http_status == 400


def test_prefix_limits() -> None:
    with pytest.raises(InvalidPrefix, match="more than 16 segments"):
        parse_prefix(".".join(["1"] * 17))
    with pytest.raises(InvalidPrefix, match="longer than 64"):
        parse_prefix("88." + "9" * 65)
    with pytest.raises(InvalidPrefix, match="contains '/'"):
        parse_prefix("88/1")


@pytest.mark.parametrize("raw, fragment", [
    ("88.1/%ZZ", "malformed percent-escape at position 5"),
    ("88.1/abc%4", "malformed percent-escape"),
    ("88.1/%C3%28", "do not decode to UTF-8"),
])
def test_malformed_escapes_are_rejected(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidIdentifier, match=fragment):
        decode_path(raw)


def test_escapes_decode_to_utf8() -> None:
    text, ident = parse_raw("88.1/%E8%AE%A2%E5%8D%95%20A%2FB")
    assert text == "88.1/订单 A/B"
    assert ident.suffix == "订单 A/B"


segment = st.text(alphabet="abcXYZ0129_-", min_size=1, max_size=8)
suffix = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
    min_size=1, max_size=40,
)


@given(st.lists(segment, min_size=1, max_size=5), suffix)
def test_parse_round_trips_and_keys_are_case_insensitive_for_ascii(
    segs: list[str], sfx: str
) -> None:
    text = ".".join(segs) + "/" + sfx
    ident = parse(text)
    assert ident.suffix == sfx
    assert parse(text.upper().split("/", 1)[0] + "/" + sfx) == ident
    assert parse(ident.spelling) == ident
    assert parse(ident.key).key == ident.key
    swapped = "".join(c.swapcase() if c.isascii() else c for c in text)
    assert parse(swapped).key == ident.key
