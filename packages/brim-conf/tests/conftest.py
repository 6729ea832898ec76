"""The brim-conf tests find their helpers (conf_testlib) next to them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
