"""The rule that keeps a lagging replica from answering for a write (resolver/replicas.py
Gate), step by step, without a database: the servers' tests are tests/replicas/."""

from __future__ import annotations

from resolver import replicas
from resolver.core.channel import CREATED_MARK
from resolver.replicas import Gate


def connected(position: int = 100) -> Gate:
    gate = Gate()
    assert gate.needed(["a"]) is None          # nothing proven before the listener is up
    gate.reset(position, gate.mark())
    return gate


def test_a_key_is_held_from_its_notification_until_the_primary_position_is_known() -> None:
    gate = connected()
    assert gate.needed(["a", "b"]) == 100
    ticket = gate.hold(["a"])
    assert gate.needed(["a"]) is None and gate.needed(["b"]) == 100
    assert gate.needed_any() is None           # a lookup by code may concern any key
    gate.settle([ticket], 250)
    assert gate.needed(["a"]) == 250 and gate.needed(["b"]) == 100
    assert gate.needed(["b", "a"]) == 250 and gate.needed_any() == 250
    again = gate.hold(["a"])
    other = gate.hold(["a"])
    gate.settle([again], 300)
    assert gate.needed(["a"]) is None          # still held by the other notification
    gate.settle([other], 310)
    assert gate.needed(["a"]) == 310


def test_creations_and_zone_changes_concern_every_key() -> None:
    gate = connected()
    ticket = gate.hold([CREATED_MARK])
    assert gate.needed(["anything"]) is None
    gate.settle([ticket], 400)
    assert gate.needed(["anything"]) == 400
    zone = gate.hold([], everything=True)
    assert gate.needed(["x"]) is None
    gate.settle([zone], 500)
    assert gate.needed(["x"]) == 500


def test_a_reconnection_replaces_the_positions_and_keeps_what_came_after_its_mark() -> None:
    gate = connected(1000)
    old = gate.hold(["a"])
    gate.settle([gate.hold(["b"])], 2000)
    gate.drop()
    assert gate.needed(["c"]) is None          # not listening: the primary answers
    mark = gate.mark()
    late = gate.hold(["d"])                    # arrived while the position was being read
    gate.reset(900, mark)                      # a new primary may be behind the old one
    assert gate.needed(["b"]) == 900 and gate.needed(["a"]) == 900
    assert gate.needed(["d"]) is None
    gate.settle([old], 5000)                   # from before the reset: covered, ignored
    assert gate.needed(["a"]) == 900
    gate.settle([late], 950)
    assert gate.needed(["d"]) == 950


def test_pruning_raises_the_floor_and_the_bound_collapses_the_keys(monkeypatch) -> None:
    gate = connected(10)
    for n, key in enumerate("abc"):
        gate.settle([gate.hold([key])], 20 + n)
    gate.prune(21)          # every replica up has replayed 21
    assert gate.floor == 21 and gate.need == {"c": 22}
    assert gate.needed(["a"]) == 21 and gate.needed(["c"]) == 22
    gate.prune(5)           # never lowers
    assert gate.floor == 21
    monkeypatch.setattr(replicas, "MAX_NEEDS", 2)
    gate.settle([gate.hold(["d", "e"])], 40)
    assert gate.need == {} and gate.floor == 40
