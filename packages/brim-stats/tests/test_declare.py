"""Declaring stats: the server's own, and the clear errors for bad declarations."""

from __future__ import annotations

import pytest

from brim.stats import STAT_TYPES, StatsError, StatsStore, check_stats, stat_help
from brim.stats._declare import START_TIME_HELP


def test_stat_types():
    assert STAT_TYPES == ("worker", "sum", "min", "max", "histogram")


def test_same_name_same_type_merged_and_start_time_first():
    store = StatsStore({"wsgi": (1, [("a", "sum"), ("a", "sum"), ("start_count", "sum"),
                                     ("request_count", "sum")])})
    assert store.declared("wsgi")[:4] == [("start_time", "worker"), ("a", "sum"),
                                          ("start_count", "sum"), ("request_count", "sum")]
    assert [n for n, _ in store.declared("wsgi")].count("a") == 1


@pytest.mark.parametrize(("groups", "message"), [
    ({"wsgi": (1, [("a", "avg")])}, "stat 'a' has unknown type 'avg'"),
    ({"wsgi": (1, [("a", "sum"), ("a", "max")])}, "stat 'a' declared twice, as 'sum' and as 'max'"),
    ({"wsgi": (1, [("start_time", "max")])}, "'start_time' is reserved"),
    ({"wsgi": (1, [("worker_3", "sum")])}, "reserved for per-worker reports"),
    ({"wsgi": (1, [(b"a", "sum")])}, "stat name must be a non-empty str"),
    ({"wsgi": (1, [("", "sum")])}, "stat name must be a non-empty str"),
    ({"wsgi": (1, ["a"])}, "is not a (name, type) pair"),
    ({"wsgi": (1, "a")}, "stats must be a list"),
    ({"wsgi": (0, [])}, "bucket count must be an int >= 1"),
    ({"wsgi": (True, [])}, "bucket count must be an int >= 1"),
    ({"wsgi": 4}, "expected (bucket count"),
    ({"": (1, [])}, "group name must be a non-empty str"),
    ({"wsgi": (1, [("a", "sum", 3)])}, "stat 'a': help must be a str, not 3"),
    ({"wsgi": (1, [("a", "sum", "x", "y")])}, "or a (name, type, help) triple"),
    ({}, "at least one group"),
    ([("wsgi", (1, []))], "groups must be Group records or a mapping"),
])
def test_bad_declarations(groups, message):
    with pytest.raises(StatsError) as info:
        StatsStore(groups)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_start_time():
    with pytest.raises(StatsError, match="start_time"):
        StatsStore({"wsgi": (1, [])}, start_time="now")
    with pytest.raises(StatsError, match="start_time"):
        StatsStore({"wsgi": (1, [])}, start_time=-5)


def test_help_text_is_kept_and_merged():
    checked = check_stats([("a", "sum"), ("b", "max", "Largest b"), ("a", "sum", "All the a"),
                           ("a", "sum", "Said again"), ("c", "worker", "")], "test")
    assert checked == [("start_time", "worker"), ("a", "sum", "All the a"),
                       ("b", "max", "Largest b"), ("c", "worker", "")]
    # A declaration comes back as given, so an app can find its own in the list.
    assert ("b", "max", "Largest b") in checked and ("c", "worker", "") in checked


def test_start_time_help_can_be_declared():
    checked = check_stats([("start_time", "worker", "When the job runner started")], "test")
    assert checked == [("start_time", "worker", "When the job runner started")]


def test_pairs_in_pairs_out():
    assert check_stats([("b", "sum"), ("a", "max"), ("b", "sum")], "test") == [
        ("start_time", "worker"), ("b", "sum"), ("a", "max")]


def test_stat_help_default_names_the_stat_and_type():
    assert stat_help(("a.b", "max", "Biggest b")) == "Biggest b"
    assert stat_help(("a.b", "max")) == "a.b (max stat; declared without a description)"
    assert stat_help(("a.b", "max", "")) == stat_help(("a.b", "max"))
    assert stat_help(("start_time", "worker")) == START_TIME_HELP
