"""One run per folder: training never overwrites another run's checkpoints or metrics.

``OUTPUT_DIR`` holds a run when it has ``metrics.json`` or a ``checkpoints/*.pth``. Training into
such a folder is refused (a one-line ``RunFolderError``) unless it continues that run
(``--resume`` with one of the folder's own checkpoints) or ``--overwrite`` says to replace it:
then the earlier run's checkpoints, metrics, TensorBoard events and log are deleted before
anything is written (config.yaml is rewritten; other files are left alone).
"""
from __future__ import annotations

import glob
import os

from .errors import RunFolderError

__all__ = ["run_files", "claim_run_folder"]


def run_files(output_dir: str) -> list[str]:
    """The files that make ``output_dir`` hold a run (checkpoints, metrics), sorted."""
    files = glob.glob(os.path.join(glob.escape(output_dir), "checkpoints", "*.pth"))
    metrics = os.path.join(output_dir, "metrics.json")
    return sorted(files + ([metrics] if os.path.isfile(metrics) else []))


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def claim_run_folder(output_dir: str, resume: str | None = None, overwrite: bool = False,
                     main: bool = True) -> None:
    """Check that training may write into ``output_dir`` (see the module docstring); with
    ``overwrite`` the main process deletes the earlier run's files."""
    existing = run_files(output_dir)
    if not existing:
        return
    if resume and _inside(resume, os.path.join(output_dir, "checkpoints")):
        return                                              # continuing this folder's own run
    if not overwrite:
        own = os.path.join(output_dir, "checkpoints", "last.pth")
        raise RunFolderError(
            f"OUTPUT_DIR {output_dir!r} already holds a run ({os.path.relpath(existing[0], output_dir)}): continue it "
            f"with --resume {own}, replace it with --overwrite, or set OUTPUT_DIR to a new folder")
    if main:
        stale = existing + glob.glob(os.path.join(glob.escape(output_dir), "tb", "events.out.tfevents.*"))
        stale += [p for p in [os.path.join(output_dir, "log.txt")] if os.path.isfile(p)]
        for path in stale:
            os.remove(path)
