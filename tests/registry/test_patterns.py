"""registry/patterns.py: which template patterns Python's re may run, and that it then
answers exactly as RE2 does, on texts made from each pattern's own characters."""

from __future__ import annotations

import itertools
import random
import time

import pytest
import re2

from registry.patterns import deterministic
from registry.record_check import _pattern

TAKEN = [
    "FA-[0-9]{8}", "EQ-\\d{4,6}", "[A-Z]{2}[0-9]+", "ORD-[0-9]+-[A-Z]?", "a?b?c?", "",
    "[a-z]+\\.[a-z]{2,}", "x.*", "[]a]+-", "[a-]+:[0-9]*", "工厂-[0-9]{1,3}", "\\++-?[0-9]{0,}",
    "[0-9a-fA-F]{64}", "A{0,3}B",
]
LEFT_TO_RE2 = [
    "(a|b)*c", "a*a", "[a-z]*[a-z0-9]", "[0-9]*0", ".*x", "a?a", "a*b?a", "^abc$", "a+?",
    "a*+", "\\w+", "[^a]+", "\\p{Han}+", "(?i)ord", "[[:alpha:]]+", "a{2,1}", "a{1001}",
    "\\x41", "[a-z]*\\.?[a-z]",
]


@pytest.mark.parametrize("pattern", TAKEN)
def test_deterministic_patterns_run_in_re_and_agree_with_re2(pattern: str) -> None:
    simple = deterministic(pattern)
    assert simple is not None, pattern
    exact = re2.compile(pattern)
    alphabet = sorted({c for c in pattern if c not in "[]{}\\?*+"} | set("09aAzZ-.\n工x"))
    rng = random.Random(pattern)
    texts = ["".join(t) for n in range(4) for t in itertools.product(alphabet[:6], repeat=n)]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
              for _ in range(3000)]
    texts += ["FA-12345678", "EQ-1234", "AB12", "ORD-7-", "ORD-7-X", "abc.de", "工厂-7",
              "+-12", "-", "a" * 64, "AAAB", "x\n", "x"]
    check = _pattern(pattern)
    for text in texts:
        want = exact.fullmatch(text) is not None
        assert (simple.fullmatch(text) is not None) == want, (pattern, text)
        assert (check(text) is None) == want, (pattern, text)


@pytest.mark.parametrize("pattern", LEFT_TO_RE2)
def test_patterns_with_more_than_one_way_to_match_stay_with_re2(pattern: str) -> None:
    assert deterministic(pattern) is None


def test_a_hostile_pattern_costs_linear_time_either_way() -> None:
    """The classic exponential cases are not given to re; a long text against a taken
    pattern is answered at once."""
    for pattern in ("(a+)+b", "(a|aa)*c", "a*a*a*a*b", "([a-z]+)*!"):
        check = _pattern(pattern)
        started = time.perf_counter()
        assert check("a" * 5000) is not None
        assert time.perf_counter() - started < 0.5
    check = _pattern("[a-z]+[0-9]+")
    started = time.perf_counter()
    assert check("a" * 200_000 + "!") is not None
    assert time.perf_counter() - started < 0.5
