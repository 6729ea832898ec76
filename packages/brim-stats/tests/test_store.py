"""The store's layout and snapshots (single process; test_fork.py does the multi-process part)."""

from __future__ import annotations

import pytest

from brim.stats import StatsError, StatsStore, server_stats


def test_layout_pads_buckets_to_cache_lines():
    # header (64 bytes) + wsgi 3 buckets x 10 stats -> 16 words each + daemon 1 x 2 -> 8 words
    s = StatsStore({'wsgi': (3, server_stats()), 'daemon:d': (1, [('x', 'sum')])})
    assert s.size == 64 + 3 * 128 + 64
    s.close()


def test_groups_and_buckets():
    s = StatsStore({'wsgi': (2, []), 'wsgi#admin': (1, []), 'daemon:a': (1, [])}, start_time=7.9)
    assert s.groups() == ['wsgi', 'wsgi#admin', 'daemon:a']
    assert s.start_time == 7
    assert s.bucket_count('wsgi') == 2
    assert s.bucket('wsgi', 1) is s.bucket('wsgi', 1)
    with pytest.raises(StatsError, match=r"group 'wsgi' has buckets 0\.\.1; there is no bucket 2"):
        s.bucket('wsgi', 2)
    with pytest.raises(StatsError, match='there is no bucket -1'):
        s.bucket('wsgi', -1)
    with pytest.raises(StatsError, match="no stats group 'tcp#x'"):
        s.bucket('tcp#x', 0)
    with pytest.raises(StatsError, match='no stats group'):
        s.snapshot('nope')
    s.close()


def test_snapshot_shape_and_rollups():
    s = StatsStore({'wsgi': (3, [*server_stats(), ('lo', 'min'), ('hi', 'max'),
                                 ('mine', 'worker')])}, start_time=100)
    for i, (lo, hi) in enumerate([(5, 1), (3, 9), (8, 4)]):
        b = s.bucket('wsgi', i)
        b.mark_started(200 + i)
        b.set('lo', lo)
        b.set('hi', hi)
        b.set('mine', i * 10)
        for _ in range(i + 1):
            b.incr('request_count')
    snap = s.snapshot('wsgi')
    assert list(snap)[:3] == ['start_time', 'start_count', 'request_count']
    assert list(snap)[-3:] == ['worker_0', 'worker_1', 'worker_2']
    assert snap['start_time'] == 100
    assert snap['request_count'] == 6
    assert snap['lo'] == 3
    assert snap['hi'] == 9
    assert 'mine' not in snap
    assert snap['worker_2'] == {**dict.fromkeys(n for n, _ in s.declared('wsgi')),
                                **snap['worker_2']}
    assert snap['worker_1']['mine'] == 10
    assert snap['worker_1']['start_time'] == 201
    s.close()


def test_max_of_all_zero_is_zero_and_min_over_all_when_none_started():
    s = StatsStore({'wsgi': (3, [('lo', 'min'), ('hi', 'max')])})
    snap = s.snapshot('wsgi')
    assert (snap['lo'], snap['hi']) == (0, 0)
    s.bucket('wsgi', 0).set('lo', 4)  # nobody called mark_started: min is over every bucket
    assert s.snapshot('wsgi')['lo'] == 0
    s.bucket('wsgi', 0).mark_started(1)  # now only started buckets count
    assert s.snapshot('wsgi')['lo'] == 4
    s.close()


def test_daemons_snapshot():
    s = StatsStore({'wsgi': (1, []), 'daemon:a': (1, [('n', 'sum')]),
                    'daemon:b': (2, [('n', 'sum')])})
    s.bucket('daemon:a', 0).incr('n')
    s.bucket('daemon:b', 1).incr('n')
    d = s.daemons_snapshot()
    assert d['daemon_a'] == {'start_time': 0, 'n': 1}
    assert d['daemon_b']['n'] == 1
    assert d['daemon_b']['worker_1'] == {'start_time': 0, 'n': 1}
    assert StatsStore({'wsgi': (1, [])}).daemons_snapshot() == {}
    s.close()
