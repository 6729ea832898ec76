"""One bucket's get/set/incr: values as unsigned 64-bit ints, undeclared names, fast path."""

from __future__ import annotations

import logging
import re
import time
from decimal import Decimal
from fractions import Fraction

import pytest

from brim.stats import StatsError, StatsStore

# What a web server might declare for itself (brim-wsgi's own list is brim.wsgi.stats).
SERVER = [("start_count", "sum"), ("request_count", "sum"),
          *((f"status_{n}xx_count", "sum") for n in range(2, 6)),
          *((f"status_{c}_count", "sum") for c in (404, 408, 499, 501))]

MAX = 2**64 - 1


@pytest.fixture
def store():
    s = StatsStore({"wsgi": (2, [*SERVER, ("app.x", "max"), ("app.n", "sum")])})
    yield s
    s.close()


def test_get_set_incr(store):
    b = store.bucket("wsgi", 0)
    assert b.get("app.x") == 0
    b.set("app.x", 7)
    b.incr("app.x")
    assert b.get("app.x") == 8
    assert store.bucket("wsgi", 1).get("app.x") == 0  # buckets are separate
    assert (b.store, b.group, b.index) == (store, "wsgi", 0)


def test_set_float_truncates(store):
    b = store.bucket("wsgi", 0)
    now = time.time()
    b.set("app.x", now)  # what the seed's example does
    assert b.get("app.x") == int(now)
    b.set("app.x", 2.999)
    assert b.get("app.x") == 2
    b.set("app.x", True)
    assert b.get("app.x") == 1


def test_set_other_real_numbers(store):
    b = store.bucket("wsgi", 0)
    b.set("app.x", Fraction(7, 2))
    assert b.get("app.x") == 3
    b.set("app.x", Decimal("-1.9"))
    assert b.get("app.x") == MAX
    b.set("app.x", Decimal("NaN"))  # ignored (with a warning), like float nan
    assert b.get("app.x") == MAX


def test_set_negative_wraps_as_uint64(store):
    b = store.bucket("wsgi", 0)
    b.set("app.x", -1)
    assert b.get("app.x") == MAX
    b.set("app.x", -2.7)  # truncated to -2 first
    assert b.get("app.x") == MAX - 1


def test_set_too_large_keeps_low_64_bits(store):
    b = store.bucket("wsgi", 0)
    b.set("app.x", 2**64 + 5)
    assert b.get("app.x") == 5
    b.set("app.x", MAX)
    assert b.get("app.x") == MAX


def test_incr_wraps_at_2_64(store):
    b = store.bucket("wsgi", 0)
    b.set("app.n", MAX)
    b.incr("app.n")
    assert b.get("app.n") == 0
    i = b.index_of("app.n")
    b.set("app.n", MAX)
    b.incr_at(i)
    assert b.get("app.n") == 0


def test_set_not_finite_is_ignored_with_one_warning(store, caplog):
    b = store.bucket("wsgi", 0)
    b.set("app.x", 3)
    with caplog.at_level(logging.WARNING, logger="brim.stats"):
        b.set("app.x", float("nan"))
        b.set("app.x", float("inf"))
    assert b.get("app.x") == 3
    assert len(caplog.records) == 1
    assert "not finite" in caplog.records[0].getMessage()


@pytest.mark.parametrize("value", ["12", None, b"1", [1], 1j])
def test_set_non_number_raises(store, value):
    with pytest.raises(StatsError, match=re.escape("stat 'app.x': value must be a number")):
        store.bucket("wsgi", 0).set("app.x", value)


def test_undeclared_names_never_break_and_warn_once_per_name(store, caplog):
    b = store.bucket("wsgi", 0)
    with caplog.at_level(logging.WARNING, logger="brim.stats"):
        for _ in range(3):
            assert b.get("nope") == 0
            b.set("nope", 5)
            b.incr("nope")
            b.incr("other")
    assert b.get("nope") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "get('nope') on undeclared stat" in messages[0]
    assert "incr('other')" in messages[1]
    assert all(r.name == "brim.stats" for r in caplog.records)
    assert store.bucket("wsgi", 0) is b  # same handle, so the once-per-name memory holds


def test_logger_passed_in(caplog):
    mine = logging.getLogger("myapp.stats")
    s = StatsStore({"wsgi": (1, [])}, logger=mine)
    with caplog.at_level(logging.WARNING):
        s.bucket("wsgi", 0).incr("x")
        other = logging.getLogger("myapp.other")
        s.bucket("wsgi", 0, logger=other).incr("y")
    assert [r.name for r in caplog.records] == ["myapp.stats", "myapp.other"]
    s.close()


def test_index_of_and_incr_at(store):
    b0, b1 = store.bucket("wsgi", 0), store.bucket("wsgi", 1)
    i = b0.index_of("request_count")
    assert i == b1.index_of("request_count") == 2  # same position in every bucket
    assert b0.index_of("nope") is None
    b1.incr_at(i)
    b1.incr_at(i)
    assert b1.get("request_count") == 2
    assert b0.get("request_count") == 0


def test_mark_started(store):
    b = store.bucket("wsgi", 1)
    before = int(time.time())
    b.mark_started()
    assert before <= b.get("start_time") <= time.time()
    b.mark_started(1234.9)
    assert b.get("start_time") == 1234
    assert b.as_dict()["start_time"] == 1234


def test_closed_store_refuses_writes():
    s = StatsStore({"wsgi": (1, [("n", "sum")])})
    b = s.bucket("wsgi", 0)
    s.close()
    s.close()  # twice is fine
    with pytest.raises(ValueError):
        b.incr("n")
    with pytest.raises(ValueError):
        b.set("n", 1)
