"""The package stands alone: stdlib only, no eventlet, no brim siblings."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
before = set(sys.modules)
import brim.supervisor
new = sorted(m.split(".")[0] for m in set(sys.modules) - before)
print(json.dumps(new))
"""


def test_imports_only_the_standard_library():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    top = set(json.loads(out)) - {"brim"}
    outside = {m for m in top if m not in sys.stdlib_module_names and not m.startswith("_")}
    assert outside <= {"setproctitle"}, outside
