"""Expected user errors: a mistake the user can fix (a bad file, config key or argument).

The tools print such an error as one line (``<tool>: error: <message>``) and exit with status 2;
``--debug`` shows the traceback instead (``tools/_bootstrap.run``). A message names the file or
key and says what to do. Subclasses also derive from the built-in type a caller would expect
(``KeyError`` for an unknown config key, ``ValueError`` for a bad value or file), so code that
catches those keeps working.
"""
from __future__ import annotations


class UserError(Exception):
    """Base class: its message (one line) is all a user needs to see."""

    def __str__(self) -> str:  # KeyError would quote the message; a user error never does
        return str(self.args[0]) if self.args else ""


class DatasetLayoutError(UserError, FileNotFoundError):
    """Dataset files missing or malformed. The first line names the problem; the lines after it
    show the expected layout, so this error keeps its lines."""
    keep_lines = True


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be used (missing or empty file, wrong type, bad value)."""


class ConfigKeyError(UserError, KeyError):
    """An unknown config key."""


class InputError(UserError, ValueError):
    """A bad input file or argument (a folder where a video was expected, a wrong output type)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used: missing, empty, truncated, refused or of another model."""


class RunFolderError(UserError, FileExistsError):
    """OUTPUT_DIR already holds another run's checkpoints or metrics."""


def one_line(err: UserError) -> str:
    """The user's line of ``err``. A DataLoader worker's error reaches the main process with the
    worker's traceback in its message ("Caught X in DataLoader worker process 0. Original
    Traceback ... module.X: message"): the original message is its last line."""
    text = str(err).strip()
    if getattr(err, "keep_lines", False) and "Original Traceback" not in text:
        return text
    if "Original Traceback" in text:
        last = text.splitlines()[-1].strip()
        name = f"{type(err).__module__}.{type(err).__qualname__}: "
        text = last[len(name):] if last.startswith(name) else last
    return " ".join(text.split("\n"))
