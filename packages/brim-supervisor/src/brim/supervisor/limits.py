"""Process resource limits a server should raise before it starts serving."""

from __future__ import annotations

import resource


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit.

    Why: each client connection is a file descriptor, and the common soft
    default (1024) caps a worker well below what it can serve; the hard
    limit is what the administrator actually allows. Children inherit the
    new limit. Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft
    # An unlimited hard limit still has a kernel ceiling (nr_open); stay well under it.
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
