"""The stats a WSGI worker declares for itself (brim.wsgi.stats), and that they are the ones it counts."""

from __future__ import annotations

import pytest

from brim.stats import StatsError, StatsStore, stat_help
from brim.wsgi.settings import HTTPSettings
from brim.wsgi.state import Counters
from brim.wsgi.stats import server_stats


def test_server_stats_default():
    assert [decl[:2] for decl in server_stats()] == [
        ("start_time", "worker"), ("pid", "worker"), ("start_count", "sum"),
        ("request_count", "sum"),
        ("status_2xx_count", "sum"), ("status_3xx_count", "sum"),
        ("status_4xx_count", "sum"), ("status_5xx_count", "sum"),
        ("request_duration_seconds", "histogram"), ("requests_in_flight", "sum"),
        ("connections_open", "sum"), ("connections_idle", "sum"), ("busy_slots", "sum"),
        ("status_404_count", "sum"), ("status_408_count", "sum"),
        ("status_499_count", "sum"), ("status_501_count", "sum"),
    ]
    assert tuple(int(d[0][7:10]) for d in server_stats()[-4:]) == \
        HTTPSettings().count_status_codes


def test_every_server_stat_says_what_it_means():
    for decl in server_stats():
        assert len(decl) == 3 and stat_help(decl) == decl[2] and decl[2][0].isupper()
    helps = {d[0]: d[2] for d in server_stats([503])}
    assert helps["status_503_count"] == "Responses with status 503"
    assert helps["status_5xx_count"] == "Responses with a 5xx status"


def test_server_stats_custom_codes():
    names = [d[0] for d in server_stats([503, 429])]
    assert names[-2:] == ["status_503_count", "status_429_count"]
    assert [d[0] for d in server_stats(())][-1] == "busy_slots"


@pytest.mark.parametrize("code", [99, 1000, "404", 4.04, True])
def test_server_stats_bad_code(code):
    with pytest.raises(StatsError, match="count_status_codes"):
        server_stats([code])


def test_the_counters_count_what_is_declared():
    store = StatsStore({"wsgi": (1, server_stats([429]))})
    bucket = store.bucket("wsgi", 0)
    counters = Counters(bucket, (429,))
    for code in (200, 404, 429, 503):
        counters.count(code)
    values = store.values("wsgi")[0]
    assert values["request_count"] == 4
    assert (values["status_2xx_count"], values["status_4xx_count"],
            values["status_5xx_count"], values["status_429_count"]) == (1, 2, 1, 1)
    store.close()
