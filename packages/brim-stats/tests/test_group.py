"""Groups described by the program: defaults, kinds, labels, keys, and the errors for bad ones."""

from __future__ import annotations

import pytest

from brim.stats import DAEMON, GROUP_KINDS, WORKERS, Group, StatsError, StatsStore


def test_kinds():
    assert GROUP_KINDS == (WORKERS, DAEMON) == ("workers", "daemon")


def test_defaults_filled_in():
    store = StatsStore([Group("jobs", 3, [("done", "sum")])])
    desc = store.group("jobs")
    assert (desc.kind, desc.labels, desc.key, desc.reported_by_all) == (
        "workers", {"group": "jobs"}, "jobs", False)
    assert [d[:2] for d in desc.stats] == [("start_time", "worker"), ("done", "sum")]
    assert store.declared("jobs") == [("start_time", "worker"), ("done", "sum")]
    store.close()


def test_the_caller_says_what_each_group_is():
    store = StatsStore([
        Group("web", 2, [("hits", "sum", "Pages served")], labels={"listener": "main"}),
        Group("mailer", 1, [("sent", "sum")], kind="daemon", labels={"process": "mailer"},
              key="mailer process", reported_by_all=True),
    ])
    assert store.group("web").labels == {"listener": "main"}
    assert store.group("web").stats[1] == ("hits", "sum", "Pages served")
    assert store.group("mailer").kind == "daemon"
    assert store.report_groups("web") == ["web", "mailer"]
    assert store.report("web")["mailer process"] == {"start_time": 0, "sent": 0}
    store.close()


def test_names_that_look_like_another_programs_mean_nothing():
    # brim.stats gives no meaning to prefixes or separators in names
    store = StatsStore({"daemon:x": (2, []), "tcp#y": (1, [])})
    assert store.report_groups("daemon:x") == ["daemon:x"]
    assert "worker_1" in store.snapshot("daemon:x")
    store.close()


def test_labels_may_be_empty_for_a_lone_group():
    store = StatsStore([Group("only", 1, [("n", "sum")], labels={})])
    assert store.group("only").labels == {}
    store.close()


@pytest.mark.parametrize(("groups", "message"), [
    ([Group("d", 2, kind="daemon")], "group 'd': a daemon group has one bucket, not 2"),
    ([Group("g", kind="pool")], "group 'g': kind must be one of workers, daemon, not 'pool'"),
    ([Group("g", labels={"worker": "x"})], "label 'worker' is added per bucket"),
    ([Group("g", labels={"a-b": "x"})], "'a-b' is not a Prometheus label name"),
    ([Group("g", labels={"__name__": "x"})], "'__name__' is not a Prometheus label name"),
    ([Group("g", labels={"a": 1})], "label 'a' must be a str, not 1"),
    ([Group("g", labels=[("a", "b")])], "labels must be a mapping"),
    ([Group("g", key="worker_0")], "key must be a non-empty str not like worker_<n>"),
    ([Group("g", key="")], "key must be a non-empty str"),
    ([Group("g"), Group("g")], "group 'g' is declared twice"),
    ([Group("a", labels={"x": "1"}), Group("b", labels={"x": "1"})],
     "groups 'a' and 'b' have the same labels {'x': '1'}"),
    ([Group("a"), Group("b", key="a")], "groups 'a' and 'b' have the same key 'a'"),
    ([Group("a", stats=[("b", "sum")]), Group("b")], "group 'b': key 'b' is also a stat name"),
    ([Group("", 1)], "group name must be a non-empty str"),
    ([Group("g", 0)], "bucket count must be an int >= 1"),
    ([("g", 1, [])], "groups must be Group records or a mapping, found ('g', 1, [])"),
    ([], "at least one group"),
    ("g", "groups must be Group records or a mapping"),
])
def test_bad_groups(groups, message):
    with pytest.raises(StatsError) as info:
        StatsStore(groups)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_daemon_may_be_reported_only_where_asked():
    store = StatsStore([Group("web", 1), Group("d", kind="daemon", key="daemon d")])
    assert store.report_groups("web") == ["web"]
    assert store.report_groups("web", everything=True) == ["web", "d"]
    store.close()
