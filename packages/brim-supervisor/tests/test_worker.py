"""WorkerContext used in-process (a launcher's no-fork debugging mode)."""

from __future__ import annotations

import os

from brim.supervisor import WorkerContext


def test_detached_context_runs_a_target_in_process():
    ctx = WorkerContext.detached("wsgi", 2, "brimd")
    assert (ctx.group, ctx.worker_id, ctx.supervisor_name) == ("wsgi", 2, "brimd")
    assert ctx.master_pid == os.getppid() and ctx.master_alive
    assert not ctx.draining
    ctx.heartbeat()
    ctx.request_drain()
    assert ctx.draining
