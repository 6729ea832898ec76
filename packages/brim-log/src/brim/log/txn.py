"""Transaction ids: one per request, carried by every line logged while it is served.

The current txn lives in a context variable; greenlet gives each green
thread its own context, and each OS thread has its own too, so concurrent
requests in one worker never see each other's txn. WSGI, TCP, UDP and
daemons all set it the same way (:func:`set_txn`), and every handler brim
sets up notes it on each record (:class:`TxnFilter`).
"""

from __future__ import annotations

import _thread
import contextvars
import itertools
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from .levels import NOTICE

__all__ = ["TxnFilter", "current_txn", "new_txn", "set_txn", "txn_logger"]

_txn: contextvars.ContextVar[str | None] = contextvars.ContextVar("brim_txn", default=None)

# Random bytes for txn ids, 16 to an id, refilled in blocks so a request
# costs no system call; each block gets the version 4 and variant bits of all
# its ids at once and is turned into hex whole, so an id is one slice of it.
# The block travels with the counter that hands out its offsets, as one
# tuple: next() on an itertools.count is atomic under the GIL, so OS threads
# (a threads worker serves on several) take ids without a lock, and never
# the same one. Only a refill takes the lock. Forgotten in a forked child, so
# no two processes ever hand out ids from the same bytes.
_TXN_IDS = 512
_TXN_BLOCK = 32 * _TXN_IDS  # hex digits
# byte 6: version 4 in its high nibble; byte 8: variant 0b10 in its top bits.
_V4_VERSION = bytes((b & 0x0F) | 0x40 for b in range(256))
_V4_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
# (hex digits, offsets into them); empty with its counter past the end, so
# that the first id refills it.
_block: tuple[str, Iterator[int]] = ("", itertools.count(_TXN_BLOCK))
# Allocated at import, before a worker may patch threading; held only while
# os.urandom fills a block, which never switches green threads.
_refill_lock = _thread.allocate_lock()


def _forget_txn_bytes() -> None:
    global _block
    _block = ("", itertools.count(_TXN_BLOCK))


os.register_at_fork(after_in_child=_forget_txn_bytes)


def _txn_block() -> str:
    block = bytearray(os.urandom(16 * _TXN_IDS))
    block[6::16] = block[6::16].translate(_V4_VERSION)
    block[8::16] = block[8::16].translate(_V4_VARIANT)
    return block.hex()


def new_txn() -> str:
    """A fresh txn id, as uuid.uuid4().hex: 32 hex digits with the version 4 and variant bits.

    Taken from a block of os.urandom bytes refilled every 512 ids, not one
    system call per request.
    """
    hexes, offsets = _block
    at = next(offsets)
    if at < _TXN_BLOCK:
        return hexes[at:at + 32]
    return _refill(offsets)


def _refill(spent: Iterator[int]) -> str:
    """A new block, unless another thread has put one in since ``spent`` ran out; then an id."""
    global _block
    with _refill_lock:
        if _block[1] is spent:
            _block = (_txn_block(), itertools.count(0, 32))
    return new_txn()


#: set_txn(txn): make txn the id carried by log lines from the current green
#: thread (or OS thread); None for none. The context variable's own method:
#: it is called twice a request.
set_txn: Callable[[str | None], object] = _txn.set

#: current_txn(): the txn id of the request the current green thread (or OS
#: thread) is serving, if any.
current_txn: Callable[[], str | None] = _txn.get


class TxnFilter(logging.Filter):
    """Notes on a record the txn of the request in progress, as ``brim_txn``.

    Sits on brim's handlers, so it applies to every record they emit, whoever
    logged it; the handler writes it (' txn:<id>' in text, a field in JSON).
    A record that already says its txn (``brim_txn_done``) is left alone.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "brim_txn_done", False):
            record.brim_txn_done = True
            txn = _txn.get()
            if txn:
                record.brim_txn = txn
        return True


class _TxnAdapter(logging.LoggerAdapter):
    """The logger apps get as env['brim.logger'].

    Notes the current txn on each record for brim's handlers, and writes it
    into the message itself when the logger's handlers were not set up by
    brim, so the txn appears either way. Adds notice() for the NOTICE level.
    """

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        txn = _txn.get()
        extra = kwargs.get("extra")
        extra = dict(extra) if extra else {}
        extra["brim_txn_done"] = True
        if txn:
            extra["brim_txn"] = txn
            if not self._brim_handlers():
                msg = f"{msg} txn:{txn}"  # a foreign handler: tag the text itself
        kwargs["extra"] = extra
        return msg, kwargs

    def _brim_handlers(self) -> bool:
        logger = self.logger
        return isinstance(logger, logging.Logger) and any(
            getattr(h, "brim_handler", False) for h in logger.handlers)

    def notice(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(NOTICE, msg, *args, **kwargs)


def txn_logger(logger: logging.Logger | logging.LoggerAdapter) -> logging.LoggerAdapter:
    """Wrap logger so every line it logs carries the current txn id."""
    if isinstance(logger, _TxnAdapter):
        return logger
    return _TxnAdapter(logger, {})
