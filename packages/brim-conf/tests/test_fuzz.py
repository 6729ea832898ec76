"""Random text and bytes never get anything but a Conf or a ConfError."""

from __future__ import annotations

import tempfile

import pytest
from conf_testlib import BRIMD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brim.conf import Conf, ConfError

# Plain, and with every dialect feature switched on.
DIALECTS = pytest.mark.parametrize("dialect", [None, BRIMD], ids=["plain", "brimd"])

# Text built from the pieces conf files are made of, so the fuzzer reaches
# deep into the parser instead of failing at the first character.
_pieces = st.sampled_from(
    ["[", "]", "#", ";", "=", ":", " ", "\t", "\n", "\r\n", "brim", "brimd", "wsgi", "tcp",
     "udp", "#x", "apps", "wsgi = a", "additional_confs", "port", "\x00", "\u00e9", "\ufeff",
     "DEFAULT"]
)
conf_like = st.lists(st.one_of(_pieces, st.text(max_size=5)), max_size=60).map("".join)


def _exercise(conf: Conf) -> None:
    for section in conf.sections():
        for option in conf.options(section):
            conf.get(section, option)
            conf.where(section, option)
            conf.get_list(section, option)
            for getter in (conf.get_int, conf.get_bool, conf.get_float):
                try:
                    getter(section, option, inherit=True)
                except ConfError:
                    pass


@DIALECTS
@settings(max_examples=400, deadline=None)
@given(text=conf_like)
@pytest.mark.slow
def test_random_text_parses_or_raises_conf_error(dialect, text):
    try:
        conf = Conf.from_string(text, "fuzz.conf", dialect=dialect)
    except ConfError as err:
        assert str(err)
        return
    _exercise(conf)


@DIALECTS
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_random_bytes_as_a_file(dialect, data):
    with tempfile.NamedTemporaryFile(suffix=".conf") as handle:
        handle.write(data)
        handle.flush()
        try:
            conf = Conf.read(handle.name, dialect=dialect)
        except ConfError as err:
            assert str(err)
            return
    _exercise(conf)
