"""Atomic checkpoints: written to a temporary file in the same folder, then renamed, so a crash
never leaves a half-written ``last.pth``."""
from __future__ import annotations

import os
import random
import tempfile

import numpy as np
import torch


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pth")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: str, model, optimizer, scheduler, epoch: int, cfg, extra: dict | None = None) -> None:
    """Model, optimizer, scheduler, the number of finished epochs, RNG states and the config."""
    atomic_save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "epoch": epoch, "rng": rng_state(), "config": cfg.dump(), **(extra or {})}, path)


def load_checkpoint(path: str, model, optimizer=None, scheduler=None, restore_rng: bool = True) -> dict:
    """Restore what was saved; returns the checkpoint dict (``epoch`` = finished epochs)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    missing, unexpected = unwrap(model).load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {path!r} does not fit the model built from the config: "
                           f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                           f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    if optimizer is not None and "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if restore_rng and "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    return ckpt


def checkpoint_classes(path: str) -> list[str] | None:
    """The class names an action checkpoint was trained with (key ``classes``), None when absent."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    names = torch.load(path, map_location="cpu", weights_only=False).get("classes")
    return [str(n) for n in names] if names else None
