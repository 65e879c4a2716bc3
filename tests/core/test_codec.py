"""The Handle JSON forms: what clients send and what they get back."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core import codec
from resolver.core.errors import BadRequest, InvalidValue
from resolver.core.record import HandleValue, check_record


def test_input_forms_pyhandle_and_datacite() -> None:
    # pyhandle: bare-string data, admin index as a string
    values = codec.parse_values(codec.values_from_body({"values": [
        {"index": 1, "type": "URL", "data": "http://foo.bar"},
        {"index": 100, "type": "HS_ADMIN", "data": {"value": {
            "index": "200", "handle": "0.NA/88.1", "permissions": "011111110011"},
            "format": "admin"}},
    ]}), timestamp=1700000000)
    assert codec.from_stored(values[0]) == HandleValue(1, "URL", "string", "http://foo.bar",
                                                       86400, 1700000000)
    assert values[1]["data"]["value"] == {"handle": "0.NA/88.1", "index": 200,
                                          "permissions": "011111110011"}
    # DataCite: a bare array
    assert len(codec.values_from_body([{"index": 1, "type": "URL", "data": "x"}])) == 1
    # one value on its own
    assert len(codec.values_from_body({"index": 1, "type": "URL", "data": "x"})) == 1


def test_hex_input_is_stored_as_base64() -> None:
    (v,) = codec.parse_values([{"index": 5, "type": "CHECKSUM",
                                "data": {"format": "hex", "value": "cafe"}}], 0)
    assert v["data"] == {"format": "base64", "value": "yv4="}


@pytest.mark.parametrize("entry, fragment", [
    ({"index": 0, "type": "URL", "data": "x"}, "index must be an integer 1.."),
    ({"index": "one", "type": "URL", "data": "x"}, "index must be an integer"),
    ({"index": 1, "type": 7, "data": "x"}, "type must be a string"),
    ({"index": 1, "type": "", "data": "x"}, "type must be a non-empty string"),
    ({"index": 1, "type": "URL", "data": 5}, "data must be an object"),
    ({"index": 1, "type": "URL", "data": {"format": "string", "value": 5}}, "JSON string"),
    ({"index": 1, "type": "URL", "data": {"format": "base64", "value": "@@"}}, "not valid base64"),
    ({"index": 1, "type": "URL", "data": {"format": "hex", "value": "zz"}}, "not valid hex"),
    ({"index": 1, "type": "URL", "data": {"format": "jpeg", "value": "x"}}, "not supported"),
    ({"index": 1, "type": "URL", "data": "x", "ttl": -1}, "ttl must be an integer"),
    ({"index": 1, "type": "URL", "data": "x", "ttl": "soon"}, "ttl must be an integer"),
    ({"index": 1, "type": "URL", "data": "x", "permissions": "11"}, "4 characters"),
    ({"index": 1, "type": "URL"}, "missing 'data'"),
    ("URL", "must be a JSON object"),
])
def test_wrong_types_in_values_are_named(entry: object, fragment: str) -> None:
    with pytest.raises(InvalidValue, match=fragment):
        codec.parse_values([entry], 0)


def test_duplicate_indexes_are_rejected() -> None:
    values = codec.parse_values([{"index": 2, "type": "A", "data": "x"},
                                 {"index": 2, "type": "B", "data": "y"}], 0)
    with pytest.raises(InvalidValue, match="duplicate index 2"):
        check_record(values)


def test_body_shapes() -> None:
    with pytest.raises(BadRequest, match="path names"):
        codec.values_from_body({"handle": "88.1/B", "values": []}, "88.1/A")
    with pytest.raises(BadRequest, match="must be an array"):
        codec.values_from_body("hello")
    with pytest.raises(BadRequest, match="not valid JSON"):
        codec.parse_json(b"{nope")
    with pytest.raises(BadRequest, match="empty"):
        codec.parse_json(b"")


def test_output_shape_matches_the_handle_server() -> None:
    stored = codec.parse_values([
        {"index": 1, "type": "URL", "data": "http://x"},
        {"index": 2, "type": "SECRET", "data": "s", "permissions": "1100"},
    ], timestamp=1700000000)
    public = codec.public_json(stored)
    spliced = codec.splice_record("88.1/a", public)
    assert spliced == orjson.dumps({"responseCode": 1, "handle": "88.1/a",
                                    "values": orjson.loads(public)})
    body = orjson.loads(spliced)
    assert list(body) == ["responseCode", "handle", "values"]
    assert body["values"][0] == {"index": 1, "type": "URL",
                                 "data": {"format": "string", "value": "http://x"},
                                 "ttl": 86400, "timestamp": "2023-11-14T22:13:20Z"}
    assert len(body["values"]) == 1                      # 1100: not public
    admin_view = [codec.to_output(v) for v in codec.visible(stored, admin=True)]
    assert admin_view[1]["permissions"] == "1100"        # only when not 1110
    assert orjson.loads(codec.splice_record("88.1/a", b"[]")) == {
        "responseCode": 200, "values": [], "handle": "88.1/a"}
    assert orjson.loads(codec.splice_record('88.1/"q"', None))["handle"] == '88.1/"q"'
    assert codec.min_ttl(public) == 86400 and codec.min_ttl(b"[]") is None


def test_visibility_and_filters() -> None:
    stored = codec.parse_values([
        {"index": 1, "type": "URL", "data": "u"},
        {"index": 2, "type": "order.status", "data": "s"},
        {"index": 3, "type": "order.qty", "data": "3", "permissions": "1100"},
        {"index": 300, "type": "HS_SECKEY", "data": "hash", "permissions": "0100"},
    ], 0)
    assert [v["index"] for v in codec.visible(stored)] == [1, 2]
    assert [v["index"] for v in codec.visible(stored, admin=True)] == [1, 2, 3]
    assert [v["index"] for v in codec.select(stored, types=("ORDER.",))] == [2, 3]
    assert [v["index"] for v in codec.select(stored, frozenset({1}), ("order.qty",))] == [1, 3]


_TRICKY = st.sampled_from(['"timestamp":1700000000', ',"permissions":"1110"', '\\"', "é中",
                           '"}', "https://x.example/a?b=1&c=2", ""])
_VALUE = st.fixed_dictionaries({
    "index": st.integers(1, 2**31 - 1),
    "type": st.sampled_from(["URL", "EMAIL", "order.status", "HS_ADMIN", "x"]),
    "data": st.one_of(
        # (any text but U+0000, which a value may not hold: test_group_commit.py)
        st.builds(lambda a, b: a + b,
                  st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                          max_size=20), _TRICKY),
        st.fixed_dictionaries({"format": st.just("hex"), "value": st.just("0aff")}),
        st.fixed_dictionaries({"format": st.just("admin"), "value": st.just(
            {"handle": "0.NA/88", "index": 200, "permissions": "011111110011"})}),
    ),
    "ttl": st.integers(0, 2**31 - 1),
    "permissions": st.sampled_from(["1110", "1111", "1100", "0110", "0010", "0100"]),
})


@settings(max_examples=300)
@given(st.lists(_VALUE, max_size=6, unique_by=lambda v: v["index"]),
       st.sampled_from([0, 1700000000, 1764140000]), st.booleans())
def test_encode_stored_agrees_with_public_json(entries: list[dict], ts: int, mixed: bool) -> None:
    """The bulk short cut and the general path give the same bytes, for every record."""
    values = codec.parse_values(entries, ts)
    if mixed and values:
        values[-1] = {**values[-1], "timestamp": ts + 1}
    stored, public = codec.encode_stored(values)
    assert stored == orjson.dumps(values)
    assert public == codec.public_json(values)
    # stored once (migration 0012): the empty column derives the same bytes
    stored, column = codec.stored_columns(values)
    assert stored == orjson.dumps(values)
    assert column == codec.public_json(values) or (
        column == codec.DERIVED and codec.derive_public(stored) == codec.public_json(values))
    # keys in another order (a value written as {"ttl", ..., "index", ...}) are never derived
    shuffled = [dict(reversed(list(v.items()))) for v in values]
    stored, column = codec.stored_columns(shuffled)
    assert column == codec.public_json(shuffled)
