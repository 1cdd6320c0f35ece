"""Errors a user can read: a bad input ends ``titans`` with one ``error: <message>`` line.

A DataModule checks what it reads and raises with a message naming the file, the line or row,
the field and what was expected. Such an error is the whole story for the user; a page of
Lightning's and jsonargparse's frames above it only hides it. :func:`input_errors_as_one_line`
prints it as ``error: <message>`` on stderr and exits with status 1, like the CLI's own
argument errors. Set ``TITANS_TRACEBACK=1`` for the full traceback instead.

Which exceptions count (:func:`is_input_error`) is decided by where they come from, not by a
dedicated exception class: the data side (``datamodules``) never imports this package and this
package never imports ``datamodules``, so no class could be shared without a third package, and
the data side's checks already raise ``ValueError`` (and its subclasses, ``FastaFormatError``,
``InvalidNucleotideError``) and ``FileNotFoundError``: every one counts without an edit, and a
new DataModule's checks count as written. An input error is:

- a ``ValueError`` raised by a ``raise`` statement in the data side's own code: a check written
  for the user, whose message says what is wrong;
- a missing or unreadable path (``FileNotFoundError``, ``IsADirectoryError``,
  ``NotADirectoryError``, ``PermissionError``) met by the data side's own code: its message
  names the path, whether the data side raised it or ``open`` did.

The data side is every module of the ``datamodules`` package, and the package of any
``LightningDataModule`` running on the stack (a domain defined outside this repository). When the
argument parser (jsonargparse) wraps an error raised while it builds a class from the config (a
DataModule's check of its arguments in ``__init__``), the wrapped error is judged and printed.
Anything else keeps its traceback, because it is a bug until shown otherwise: an exception of any
other type, a ``ValueError`` raised inside a library (numpy, torch) or by an implicit check
(unpacking ``a, b = ...``) even when data code called it, an error re-raised from a DataLoader
worker process (torch raises it anew, the worker's traceback in its message), and any error in
the model side (a task's own checks included).
"""

from __future__ import annotations

import dis
import functools
import os
import sys
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Optional, TypeVar

from lightning.pytorch import LightningDataModule

TRACEBACK_VARIABLE = "TITANS_TRACEBACK"
DATA_PACKAGE = "datamodules"
PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)

F = TypeVar("F", bound=Callable)


def frames(traceback: Optional[TracebackType]) -> list[tuple[FrameType, int]]:
    """``(frame, index of its last instruction)`` of a traceback, outermost first."""
    found = []
    while traceback is not None:
        found.append((traceback.tb_frame, traceback.tb_lasti))
        traceback = traceback.tb_next
    return found


def package_of(frame: FrameType) -> str:
    """The top-level package of the module a frame runs in (``""`` when unknown)."""
    return str(frame.f_globals.get("__name__", "")).partition(".")[0]


def data_packages(stack: list[tuple[FrameType, int]]) -> set[str]:
    """``datamodules`` and the top-level package of every DataModule whose method is on ``stack``."""
    owners = (frame.f_locals.get("self") for frame, _ in stack)
    return {DATA_PACKAGE} | {type(o).__module__.partition(".")[0] for o in owners if isinstance(o, LightningDataModule)}


def is_raise_statement(frame: FrameType, lasti: int) -> bool:
    """Whether the instruction at ``lasti`` of ``frame`` is a ``raise`` (not a call, not an unpacking)."""
    return any(i.offset == lasti and i.opname == "RAISE_VARARGS" for i in dis.get_instructions(frame.f_code))


def is_input_error(error: BaseException) -> bool:
    """Whether ``error`` is a user-input error (see the module docstring) rather than a bug."""
    if not isinstance(error, (ValueError, *PATH_ERRORS)):
        return False
    stack = frames(error.__traceback__)
    if not stack:
        return False
    frame, lasti = stack[-1]  # where it was raised
    if package_of(frame) not in data_packages(stack):
        return False
    return isinstance(error, PATH_ERRORS) or is_raise_statement(frame, lasti)


def input_error(error: BaseException) -> Optional[BaseException]:
    """``error`` if it is a user-input error, or the input error that the argument parser wrapped
    (followed through ``__cause__`` / ``__context__`` of errors jsonargparse raised); else None."""
    if is_input_error(error):
        return error
    stack = frames(error.__traceback__)
    wrapped = error.__cause__ or error.__context__
    if stack and package_of(stack[-1][0]) == "jsonargparse" and wrapped is not None:
        return input_error(wrapped)
    return None


def traceback_requested() -> bool:
    """``TITANS_TRACEBACK`` set to anything but empty, ``0``, ``false`` or ``no``."""
    return os.environ.get(TRACEBACK_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def input_errors_as_one_line(main: F) -> F:
    """Decorate an entry point: a user-input error ends it as ``error: <message>`` on stderr with
    exit status 1; every other exception, or any with ``TITANS_TRACEBACK=1``, propagates as before."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ValueError, *PATH_ERRORS) as error:
            found = input_error(error)
            if found is None or traceback_requested():
                raise
            sys.stderr.write(f"error: {found}\n")
            sys.stderr.flush()
            raise SystemExit(1) from None

    return run  # type: ignore[return-value]
