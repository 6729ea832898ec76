"""raise_open_files_limit lifts the soft limit to the hard one, in a real child."""

from __future__ import annotations

import os
import resource

from brim.supervisor import raise_open_files_limit


def test_soft_limit_is_raised_to_the_hard_limit():
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_end)
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        got = raise_open_files_limit()
        now = resource.getrlimit(resource.RLIMIT_NOFILE)
        os.write(write_end, f"{got} {now[0]} {now[1]}".encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        got, soft, hard = (int(x) for x in pipe.read().split())
    os.waitpid(pid, 0)
    assert got == soft
    assert soft == hard or (hard == resource.RLIM_INFINITY and soft >= 1 << 20)
