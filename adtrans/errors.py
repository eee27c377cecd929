"""Errors and warnings that adtrans reports to users, located at the user's code.

A `DifferentiationError` prints like a compiler diagnostic::

    model.py:12:5: error: function 'add' is not differentiable
    model.py:13:11: note: cannot differentiate through a non-differentiable result; ...

Internal failures are never reported with this class: it is for mistakes the
user can fix, and each carries a note saying how.
"""

from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class Location:
    filename: str
    lineno: int
    col: int

    def __str__(self):
        return f"{self.filename}:{self.lineno}:{self.col}"


@dataclass(frozen=True)
class Note:
    text: str
    location: Optional[Location] = None

    def __str__(self):
        where = f"{self.location}: " if self.location else ""
        return f"{where}note: {self.text}"


class DifferentiationError(TypeError):
    """A function cannot be differentiated as written.

    Attributes ``filename``, ``lineno`` and ``col`` (1-based, like editors)
    say where; ``message`` says what; ``notes`` say what to do.
    """

    def __init__(self, message, location=None, notes=()):
        self.message = message
        self.location = location
        self.notes: List[Note] = [n if isinstance(n, Note) else Note(n) for n in notes]
        super().__init__(self._format())

    @property
    def filename(self):
        return self.location.filename if self.location else None

    @property
    def lineno(self):
        return self.location.lineno if self.location else None

    @property
    def col(self):
        return self.location.col if self.location else None

    def _format(self):
        where = f"{self.location}: " if self.location else ""
        lines = [f"{where}error: {self.message}"]
        lines.extend(str(note) for note in self.notes)
        return "\n".join(lines)

    def __str__(self):
        return self._format()

    def __reduce__(self):
        return (type(self), (self.message, self.location, tuple(self.notes)))


class ZeroDerivativeWarning(UserWarning):
    """The result cannot depend on an argument the derivative was asked for."""


class InternalError(RuntimeError):
    """A bug in adtrans, not in the user's code: please report it."""
