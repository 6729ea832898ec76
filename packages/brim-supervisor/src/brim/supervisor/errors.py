"""The one exception type of brim.supervisor.

Every failure a caller can act on (a port that cannot be bound, a user that
does not exist, a certificate that does not load) is raised as
:class:`SupervisorError` with a one-line message that names the thing to fix,
so a launcher can print ``str(err)`` and exit without a traceback.
"""

from __future__ import annotations


class SupervisorError(Exception):
    """A clear, one-line reason why a supervisor operation could not be done."""
