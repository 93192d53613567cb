"""Checkpoints that can never run code, written atomically.

A checkpoint holds only tensors and plain Python types (dict, list, str, int, float, bool, None):
RNG states are converted to tensors and ints, the config is YAML text. Every checkpoint is read
by ``read_checkpoint`` with ``torch.load(weights_only=True)``, which refuses any other object, so
a crafted ``.pth`` cannot execute code; an unusable file is a one-line ``CheckpointError``.
Files are written to a temporary file in the same folder, then renamed, so a crash never leaves a
half-written ``last.pth``.
"""
from __future__ import annotations

import os
import pickle
import random

import numpy as np
import torch
import yaml

from .errors import CheckpointError
from .files import atomic_write


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states as tensors and plain numbers."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    if kind != "MT19937":
        raise ValueError(f"numpy's global generator is {kind}, expected MT19937")
    state = {"python": {"version": int(version), "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of ``rng_state``."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path: str) -> None:
    """``torch.save`` to a temporary file, fsync, rename (``engine/files.py``)."""
    atomic_write(path, lambda f: torch.save(obj, f), durable=True)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: str, model, optimizer, scheduler, epoch: int, cfg, extra: dict | None = None,
                    criterion=None, scaler=None) -> None:
    """Model, optimizer, scheduler, criterion (e.g. center-loss centres) and gradient-scaler
    states, the number of finished epochs, RNG states and the config (YAML text)."""
    atomic_save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "criterion": criterion.state_dict() if criterion is not None else None,
                 "scaler": scaler.state_dict() if scaler is not None else None,
                 "epoch": epoch, "rng": rng_state(), "config": cfg.dump(), **(extra or {})}, path)


def load_tensor_file(path: str, what: str = "checkpoint") -> object:
    """``torch.load(path, weights_only=True)`` (no code can run) with one-line ``CheckpointError``s
    naming ``what`` and the file for a folder, a missing, empty, truncated or refused file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        hint = (f": pass a checkpoint file such as {os.path.join(path, 'checkpoints', 'last.pth')!r}"
                if what == "checkpoint" else ": pass a .pth file")
        raise CheckpointError(f"{what} {path!r} is a folder{hint}")
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path!r}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{what} {path!r} is empty (0 bytes): a save was cut short; use another file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip (RuntimeError), cut pickle (EOFError), garbage (KeyError)
        if isinstance(e, pickle.UnpicklingError) and "weights only load failed" in str(e).lower():
            raise CheckpointError(
                f"{what} {path!r} refused: it holds Python objects other than tensors and plain types, which "
                "could run code when loaded (a foreign file, or a checkpoint saved before vidattn stored RNG states "
                "as tensors); only load files whose tensors can be read safely") from None
        raise CheckpointError(f"{what} {path!r} is truncated or not a PyTorch file "
                              f"({type(e).__name__}: {_first_line(e)})") from None


def read_checkpoint(path: str) -> dict:
    """The checkpoint dict at ``path``, loaded with ``weights_only=True`` (no code can run); a
    missing, empty, truncated, refused or foreign file raises a one-line ``CheckpointError``."""
    ckpt = load_tensor_file(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} is not a vidattn checkpoint (no 'model' weights); "
                              "pass OUTPUT_DIR/checkpoints/last.pth or best.pth of a run")
    return ckpt


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else "no details"


def _mismatch(err: RuntimeError) -> str:
    """The first 'size mismatch for KEY: ...' line of a ``load_state_dict`` error."""
    lines = [line.strip() for line in str(err).splitlines() if "mismatch" in line]
    return (lines[0] if lines else _first_line(err))[:300]


def checkpoint_task(ckpt: dict) -> str | None:
    """The TASK (``reid`` / ``action``) in the config a checkpoint was saved with, if any."""
    try:
        cfg = yaml.safe_load(ckpt.get("config") or "")
    except yaml.YAMLError:
        return None
    return cfg.get("TASK") if isinstance(cfg, dict) else None


def check_task(ckpt: dict, task: str, path: str) -> None:
    """A one-line error when the checkpoint was trained for another task than the config's."""
    saved = checkpoint_task(ckpt)
    if saved is not None and saved != task:
        raise CheckpointError(f"checkpoint {path!r} holds a TASK {saved} model but the config says TASK {task}: "
                              "pass the config it was trained with (its run folder's config.yaml)")


def load_checkpoint(path: str, model, optimizer=None, scheduler=None, restore_rng: bool = True,
                    ckpt: dict | None = None, task: str | None = None, criterion=None, scaler=None) -> dict:
    """Restore what was saved; returns the checkpoint dict (``epoch`` = finished epochs).
    ``ckpt``: the dict ``read_checkpoint(path)`` already returned (read once); ``task``: the
    config's TASK, checked against the checkpoint's. A scaler state is restored when both the
    checkpoint's and ``scaler`` are in use (a run may switch float16 AMP on or off)."""
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    if task is not None:
        check_task(ckpt, task, path)
    try:
        missing, unexpected = unwrap(model).load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"checkpoint {path!r} does not fit the model built from the config "
                              f"({_mismatch(e)}): pass the config it was trained with (its run folder's "
                              "config.yaml)") from None
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path!r} does not fit the model built from the config: "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                              f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
                              "pass the config it was trained with (its run folder's config.yaml)")
    if optimizer is not None and "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if criterion is not None and ckpt.get("criterion") is not None:
        try:
            criterion.load_state_dict(ckpt["criterion"])
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {path!r}: the loss state does not fit LOSS.* of the config "
                                  f"({_mismatch(e)}); resume with the config it was trained with") from None
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if restore_rng and "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    return ckpt


def checkpoint_classes(ckpt: dict) -> list[str] | None:
    """The class names an action checkpoint (a ``read_checkpoint`` dict) was trained with (key
    ``classes``), None when absent."""
    names = ckpt.get("classes")
    return [str(n) for n in names] if names else None
