"""``python -m brim.server`` runs the brimd command."""

import sys

from .cli import main

sys.exit(main())
