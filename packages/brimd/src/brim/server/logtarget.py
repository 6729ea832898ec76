"""Where a brimd process logs, and how: one settings record per [brim] or subconfig.

Read once from the conf (log_name, log_level, log_facility, log_address,
log_sink, log_file, log_format) and turned into a configured logger in each
process by :meth:`LogTarget.setup`. The sink depends on how brimd runs
unless the conf names one: syslog when daemonized, stderr in the
foreground; ``-o`` adds stderr to whatever else is chosen.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

from brim.conf import Conf, ConfError
from brim.supervisor.files import UnsafeFileError, check_regular, open_regular

from . import options

__all__ = ["LogTarget"]


@dataclass(frozen=True)
class LogTarget:
    """The logging options of one section, checked."""

    section: str
    name: str
    level: str
    facility: str
    address: str | None
    sink: str | None
    file: str | None
    fmt: str

    @classmethod
    def read(cls, conf: Conf, kind: str, section: str) -> LogTarget:
        """The section's logging options (falling back to [brim]); ConfError if they clash."""
        def value(name: str) -> object:
            return options.value(conf, kind, section, name)

        target = cls(section, str(value("log_name")), str(value("log_level")),
                     str(value("log_facility")), _text(value("log_address")),
                     _text(value("log_sink")), _text(value("log_file")),
                     str(value("log_format")))
        if target.sink == "file" and not target.file:
            raise ConfError(f"[{section}] log_file: needed when log_sink = file")
        if target.file and not os.path.isabs(target.file):
            # Made absolute now: a daemonized brimd runs from /.
            target = dataclasses.replace(target, file=os.path.abspath(target.file))
        if target.sink == "file" and target.file:
            try:
                check_regular(target.file)  # the opens refuse it too; this says why, early
            except UnsafeFileError as err:
                raise target._refused(err) from None
            except OSError:
                pass  # a directory, say: left to the sink, which warns and drops lines
        return target

    def hand_file_to(self, uid: int | None, gid: int | None) -> None:
        """Create the log file now and give it to the user the workers will run as.

        The master opens its log before it drops privileges; workers open
        theirs after, as ``user``, and could not append to a file root made.
        A file that cannot be made is left to the sink, which warns. Opened
        as root in a directory ``user`` may write to: a symbolic link, a
        non-regular file or a hard link there is refused (ConfError), never
        followed, and the ``fchown`` is on the descriptor opened, not the path.
        """
        if self.sink != "file" or not self.file or (uid is None and gid is None):
            return
        try:
            fd = open_regular(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        except UnsafeFileError as err:
            raise self._refused(err) from None
        except OSError:
            return
        try:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _refused(self, err: UnsafeFileError) -> ConfError:
        """'[brim] log_file: /var/log/brim.log is a symbolic link; not followed'."""
        return ConfError(f"[{self.section}] log_file: {self.file} {err.strerror}")

    def setup(self, *, stderr: bool, syslog: bool) -> logging.Logger:
        """Configure this target's logger in this process.

        stderr and syslog say how brimd runs (foreground: stderr; daemonized:
        syslog; ``-o``: stderr as well). A log_sink in the conf replaces that
        choice; ``-o`` still adds stderr.
        """
        from brim.log.configure import setup_logging

        if self.sink is not None:
            also_stderr = stderr and syslog  # -o on a daemon: stderr as well
            syslog = self.sink == "syslog"
            stderr = self.sink == "stderr" or also_stderr
        try:
            return setup_logging(
                self.name, self.level, self.facility, address=self.address, stderr=stderr,
                syslog=syslog, stdout=self.sink == "stdout",
                file=self.file if self.sink == "file" else None, fmt=self.fmt)
        except ValueError as err:
            raise ConfError(f"[{self.section}] {err}") from None


def _text(value: object) -> str | None:
    return None if value is None else str(value)
