"""Broken inputs (unreadable videos and frames): the shared log, the share check and its error.

>>> log = BrokenVideoLog("outputs/run/broken_videos.tsv", run="20260101-120000-4242")
>>> log.record("a.mp4", "empty file")        # True: new in this run, report it; False: known
>>> log.entries()                            # {path: reason} recorded by THIS run, in order
>>> check_broken_share(3, 20, 0.1, "videos") # raises TooManyBrokenVideos (15% > 10%)

The file holds ``path<TAB>reason<TAB>run`` lines. Each run (a training, test or inference
invocation, all its DataLoader workers and DDP ranks together) has its own ``run`` id and sees
only its own lines: a list left by an earlier run in the same folder neither counts in this run's
summary nor makes this run skip a file without trying it (it may have been repaired since).
"""
from __future__ import annotations

import fcntl
import os

from engine.errors import UserError

__all__ = ["BrokenVideoLog", "TooManyBrokenVideos", "check_broken_share", "broken_summary"]


class TooManyBrokenVideos(UserError, RuntimeError):
    """More than the allowed share of a dataset's videos (or frames) cannot be read. A
    ``UserError``: the tools print its one line (``engine.errors.one_line``), also when a
    DataLoader worker raised it."""


def check_broken_share(num_broken: int, num_total: int, max_share: float, what: str = "videos",
                       where: str = "") -> None:
    """Raise ``TooManyBrokenVideos`` when ``num_broken / num_total > max_share``."""
    if num_total and num_broken / num_total > max_share:
        raise TooManyBrokenVideos(
            f"{num_broken} of {num_total} {what} ({100 * num_broken / num_total:.1f}%) are unreadable, more than "
            f"the allowed share {max_share:g} (DATA.MAX_BROKEN_SHARE){'; list: ' + where if where else ''}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split("\t")).replace("\n", " ").replace("\r", " ")


class BrokenVideoLog:
    """A file of ``path<TAB>reason<TAB>run`` lines, one per unreadable input and run, shared by processes.

    ``record`` appends under an exclusive ``flock`` (file opened with O_APPEND) after checking
    that this run has not listed the path yet, so an input is written, and reported, once however
    many DataLoader workers or DDP ranks (on one file system) meet it. ``run`` None reads and
    writes lines of every run as one.
    """

    def __init__(self, path: str, run: str | None = None):
        self.path = os.fspath(path)
        self.run = None if run is None else _one_line(run)

    def _rows(self, text: str):
        for line in text.splitlines():
            if line:
                path, reason, run = (line.split("\t", 2) + ["", ""])[:3]
                if self.run is None or run == self.run:
                    yield path, reason

    def record(self, path: str, reason: str) -> bool:
        """Add ``path``; True when it is new to this run (the caller then reports it), False when known."""
        path, reason = _one_line(path), _one_line(reason)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            if any(known == path for known, _ in self._rows(f.read())):
                return False
            f.write(f"{path}\t{reason}\t{self.run or ''}\n")
            f.flush()
        return True

    def entries(self) -> dict[str, str]:
        """{path: reason} of this run, in the order first met (empty when nothing was recorded)."""
        if not os.path.isfile(self.path):
            return {}
        with open(self.path, encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            text = f.read()
        return dict(self._rows(text))


def broken_summary(entries: dict[str, str], train: set, test: set, what: str, train_done: str, test_done: str,
                   where: str) -> str:
    """The end-of-run summary of ``entries`` ({path: reason}) that belong to the ``train`` or
    ``test`` paths: a head line with the counts, then one line per input, training first."""
    rows = [("train", p, r) for p, r in entries.items() if p in train]
    rows += [("test", p, r) for p, r in entries.items() if p in test and p not in train]
    if not rows:
        return ""
    n_train = sum(split == "train" for split, _, _ in rows)
    head = f"unreadable {what}: " + (f"{n_train} of {len(train)} training {what} {train_done}, " if train else "")
    head += f"{len(rows) - n_train} of {len(test)} test {what} {test_done} (list: {where})"
    return "\n".join([head] + [f"  {split:<5}  {path}  {reason}" for split, path, reason in rows])
