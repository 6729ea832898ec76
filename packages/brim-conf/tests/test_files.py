"""Reading files: order, overrides, missing files, bad files and includes."""

from __future__ import annotations

import os

import pytest
from conf_testlib import BRIMD

from brim.conf import Conf, ConfError


def write(path, text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data)
    return str(path)


def test_later_file_overrides_earlier_option_by_option(tmp_path):
    a = write(tmp_path / "a.conf", "[brim]\nport = 80\nworkers = 2\n[wsgi]\napps = x\n")
    b = write(tmp_path / "b.conf", "[brimd]\nport = 81\n")
    conf = Conf.read([a, b], dialect=BRIMD)
    assert conf.options("brim") == {"port": "81", "workers": "2"}
    assert conf.get("wsgi", "apps") == "x"
    assert conf.files == [a, b]
    assert conf.where("brim", "port") == f"{b} line 2"


def test_missing_default_files_are_skipped(tmp_path):
    a = write(tmp_path / "a.conf", "[brim]\nport = 80\n")
    conf = Conf.read([str(tmp_path / "nope.conf"), a], missing_ok=True)
    assert conf.files == [a]


@pytest.mark.parametrize("kind", ["missing", "directory", "binary", "unreadable"])
def test_named_file_problems_are_conf_errors(tmp_path, kind):
    path = tmp_path / "x.conf"
    if kind == "directory":
        path.mkdir()
        expected = "is a directory"
    elif kind == "binary":
        write(path, b"[brim]\nport = \xff\xfe\n")
        expected = "not UTF-8 text (byte 0xff on line 2)"
    elif kind == "unreadable":
        write(path, "[brim]\n")
        path.chmod(0)
        expected = "permission denied"
        if os.geteuid() == 0:
            _check_as_nobody(str(path), expected)
            return
    else:
        expected = "conf file not found"
    with pytest.raises(ConfError) as info:
        Conf.read([str(path)])
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_utf8_bom_is_accepted(tmp_path):
    conf = Conf.read([write(tmp_path / "a.conf", "\ufeff[brim]\nname = caf\u00e9\n")])
    assert conf.get("brim", "name") == "caf\u00e9"


def test_additional_confs_are_read_after_and_relative(tmp_path):
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d" / "10-a.conf", "[brim]\nport = 81\n[echo]\ncall = a.B\n")
    write(tmp_path / "conf.d" / "20-b.conf", "[brim]\nport = 82\n")
    write(tmp_path / "extra.conf", "[brim]\nworkers = 3\n")
    main = write(
        tmp_path / "main.conf",
        "[brim]\nport = 80\nadditional_confs = extra.conf conf.d/*.conf\n",
    )
    conf = Conf.read(main, dialect=BRIMD)
    assert conf.get_int("brim", "port") == 82
    assert conf.get_int("brim", "workers") == 3
    assert conf.get("echo", "call") == "a.B"
    assert [os.path.basename(f) for f in conf.files] == [
        "main.conf", "extra.conf", "10-a.conf", "20-b.conf",
    ]


def test_missing_include_names_both_files(tmp_path):
    main = write(tmp_path / "main.conf", "[brim]\nadditional_confs = gone.conf\n")
    with pytest.raises(ConfError) as info:
        Conf.read([main], dialect=BRIMD)
    assert "gone.conf: conf file not found" in str(info.value)
    assert "named by additional_confs, " in str(info.value) and "main.conf line 2" in str(info.value)


def test_include_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.conf", "[brim]\nadditional_confs = b.conf\n")
    write(tmp_path / "b.conf", "[brim]\nadditional_confs = a.conf\n")
    with pytest.raises(ConfError, match="additional_confs include cycle"):
        Conf.read([str(tmp_path / "a.conf")], dialect=BRIMD)


def test_self_include_is_a_cycle(tmp_path):
    write(tmp_path / "a.conf", "[brim]\nadditional_confs = a.conf\n")
    with pytest.raises(ConfError, match="additional_confs include cycle"):
        Conf.read([str(tmp_path / "a.conf")], dialect=BRIMD)


def _check_as_nobody(path: str, expected: str) -> None:
    """Root reads any file, so check the unreadable case in a child that is not root."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        message = b"no error"
        try:
            os.setgid(65534)
            os.setuid(65534)
            Conf.read([path])
        except ConfError as err:
            message = str(err).encode()
        except BaseException as err:
            message = repr(err).encode()
        os.write(write_end, message)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    assert path in message and expected in message, message


def test_a_socket_path_is_a_conf_error(tmp_path):
    import socket

    path = str(tmp_path / "sock.conf")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)
        with pytest.raises(ConfError, match="cannot read conf file"):
            Conf.read([path])


def test_read_takes_one_path_as_a_string_or_path_like(tmp_path):
    a = write(tmp_path / "app.conf", "[server]\nport = 80\n")
    for one in (a, tmp_path / "app.conf", os.fsencode(a)):
        conf = Conf.read(one)  # type: ignore[arg-type]
        assert conf.files == [a]
        assert conf.get_int("server", "port") == 80


def test_read_takes_a_list_or_any_iterable_of_paths(tmp_path):
    a = write(tmp_path / "a.conf", "[server]\nport = 80\n")
    b = write(tmp_path / "b.conf", "[server]\nport = 81\n")
    assert Conf.read([tmp_path / "a.conf", b]).get_int("server", "port") == 81
    assert Conf.read(p for p in (b, a)).get_int("server", "port") == 80
    assert Conf.read(()).files == []


def test_a_missing_single_path_is_named_whole(tmp_path):
    """A string is one file, not a list of one-letter file names."""
    path = str(tmp_path / "app.conf")
    with pytest.raises(ConfError) as info:
        Conf.read(path)
    assert str(info.value) == f"{path}: conf file not found"
    assert Conf.read(path, missing_ok=True).files == []


def test_plain_conf_reads_no_includes(tmp_path):
    write(tmp_path / "extra.conf", "[brim]\nworkers = 3\n")
    main = write(tmp_path / "main.conf", "[brim]\nadditional_confs = extra.conf\n")
    conf = Conf.read(main)
    assert conf.files == [main]
    assert conf.get("brim", "workers") is None
