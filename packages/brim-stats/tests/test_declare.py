"""Declaring stats: the server's own, and the clear errors for bad declarations."""

from __future__ import annotations

import pytest

from brim.stats import STAT_TYPES, StatsError, StatsStore, server_stats


def test_stat_types():
    assert STAT_TYPES == ('worker', 'sum', 'min', 'max')


def test_server_stats_default():
    assert server_stats() == [
        ('start_time', 'worker'), ('start_count', 'sum'), ('request_count', 'sum'),
        ('status_2xx_count', 'sum'), ('status_3xx_count', 'sum'),
        ('status_4xx_count', 'sum'), ('status_5xx_count', 'sum'),
        ('status_404_count', 'sum'), ('status_408_count', 'sum'),
        ('status_499_count', 'sum'), ('status_501_count', 'sum'),
    ]


def test_server_stats_custom_codes():
    names = [n for n, _ in server_stats([503, 429])]
    assert names[-2:] == ['status_503_count', 'status_429_count']
    assert [n for n, _ in server_stats(())][-1] == 'status_5xx_count'


@pytest.mark.parametrize('code', [99, 1000, '404', 4.04, True])
def test_server_stats_bad_code(code):
    with pytest.raises(StatsError, match='count_status_codes'):
        server_stats([code])


def test_same_name_same_type_merged_and_start_time_first():
    store = StatsStore({'wsgi': (1, [('a', 'sum'), ('a', 'sum'), *server_stats()])})
    assert store.declared('wsgi')[:4] == [('start_time', 'worker'), ('a', 'sum'),
                                          ('start_count', 'sum'), ('request_count', 'sum')]
    assert [n for n, _ in store.declared('wsgi')].count('a') == 1


@pytest.mark.parametrize(('groups', 'message'), [
    ({'wsgi': (1, [('a', 'avg')])}, "stat 'a' has unknown type 'avg'"),
    ({'wsgi': (1, [('a', 'sum'), ('a', 'max')])}, "stat 'a' declared twice, as 'sum' and as 'max'"),
    ({'wsgi': (1, [('start_time', 'max')])}, "'start_time' is reserved"),
    ({'wsgi': (1, [('worker_3', 'sum')])}, 'reserved for per-worker reports'),
    ({'wsgi': (1, [(b'a', 'sum')])}, 'stat name must be a non-empty str'),
    ({'wsgi': (1, [('', 'sum')])}, 'stat name must be a non-empty str'),
    ({'wsgi': (1, ['a'])}, 'is not a (name, type) pair'),
    ({'wsgi': (1, 'a')}, 'stats must be a list'),
    ({'wsgi': (0, [])}, 'bucket count must be an int >= 1'),
    ({'wsgi': (True, [])}, 'bucket count must be an int >= 1'),
    ({'wsgi': 4}, 'expected (bucket count'),
    ({'': (1, [])}, 'group name must be a non-empty str'),
    ({'daemon:': (1, [])}, 'no daemon name'),
    ({}, 'at least one group'),
    ([('wsgi', (1, []))], 'groups must be a mapping'),
])
def test_bad_declarations(groups, message):
    with pytest.raises(StatsError) as info:
        StatsStore(groups)
    assert message in str(info.value)
    assert '\n' not in str(info.value)


def test_bad_start_time():
    with pytest.raises(StatsError, match='start_time'):
        StatsStore({'wsgi': (1, [])}, start_time='now')
    with pytest.raises(StatsError, match='start_time'):
        StatsStore({'wsgi': (1, [])}, start_time=-5)
