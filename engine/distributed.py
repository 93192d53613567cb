"""Process-group helpers for ``torchrun`` (DDP: gloo on CPU, nccl on CUDA)."""
from __future__ import annotations

import os
import pickle

import torch
import torch.distributed as dist

from .errors import ConfigError


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group when launched by torchrun (``WORLD_SIZE > 1``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_dist():
        return is_dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)
    global _CONTROL
    if backend == "nccl":  # a CPU group for the per-step control collectives (``stop_together``)
        _CONTROL = dist.new_group(backend="gloo")
    return True


# A gloo group beside an NCCL default group: a flag all-reduced on the GPU would have to be read
# back, making the host wait for all queued GPU work at every training step; on the CPU it waits
# only for the other ranks' hosts. None: the default group (gloo on CPU runs).
_CONTROL = None


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (``obj`` itself outside DDP)."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_gradients(params) -> None:
    """Average the gradients of ``params`` over the ranks, as DDP does for the model's (for
    parameters outside the DDP model, e.g. center-loss centres): one flat all-reduce."""
    grads = [p.grad for p in params if p.grad is not None]
    if not is_dist() or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def run_together(fn, *args):
    """``fn(*args)`` as one step of every rank: when it raises on any rank, every rank raises too
    (``stop_together``), so none is left waiting in a later collective until the timeout."""
    result = error = None
    try:
        result = fn(*args)
    except Exception as err:  # noqa: BLE001 - handed to stop_together, which raises it
        error = err
    stop_together(error)
    return result


def stop_together(error: Exception | None) -> None:
    """A collective that every rank calls at the same point with the error it met there, or None.
    When any rank has one, all raise the error of the lowest such rank: that rank its own (with its
    traceback), the others the same type and message (a ``RuntimeError`` naming the type when the
    type cannot be rebuilt from its message). Outside DDP: raise ``error`` if any. Costs one
    all-reduce of ``world_size`` integers, on the CPU (``_CONTROL``), so a training step that
    calls it does not wait for the GPU."""
    if not is_dist():
        if error is not None:
            raise error
        return
    on_gpu = _CONTROL is None and dist.get_backend() == "nccl"    # an NCCL group set up elsewhere
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    failed = torch.zeros(world_size(), dtype=torch.int32, device=device)
    failed[rank()] = int(error is not None)
    dist.all_reduce(failed, group=_CONTROL)
    failing = failed.nonzero().flatten().tolist()
    if not failing:
        return
    first = failing[0]
    box = [_portable(error) if rank() == first else None]
    dist.broadcast_object_list(box, src=first)
    if rank() == first:
        raise error
    kind, message = box[0]
    try:
        same = kind(message)
        same = same if str(same) == message else None
    except Exception:  # noqa: BLE001 - a constructor that wants other arguments
        same = None
    raise (same or RuntimeError(f"rank {first} stopped: {kind.__name__}: {message}")) from error


def _portable(error: Exception) -> tuple[type, str]:
    """(type, message) that pickles (a class defined in a function does not: RuntimeError then);
    a user error's message is its one line (a DataLoader worker's traceback cut off)."""
    from .errors import UserError, one_line
    message = one_line(error) if isinstance(error, UserError) else str(error)
    try:
        pickle.dumps(type(error))
        return type(error), message
    except Exception:  # noqa: BLE001
        return RuntimeError, f"{type(error).__name__}: {message}"


def barrier() -> None:
    if is_dist():
        dist.barrier()


def cleanup() -> None:
    global _CONTROL
    if is_dist():
        dist.destroy_process_group()          # every group, the control group too
    _CONTROL = None


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (error if absent) or ``auto``; under DDP each rank takes its LOCAL_RANK GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"MODEL.DEVICE is {name!r} but no CUDA device is available here: "
                              "set MODEL.DEVICE cpu or auto")
        if name == "cuda" and "LOCAL_RANK" in os.environ:
            name = f"cuda:{os.environ['LOCAL_RANK']}"
    elif name != "cpu":
        raise ConfigError(f"MODEL.DEVICE must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def all_gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects; ``[obj]`` in one process)."""
    if not is_dist():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_shards(compute) -> list:
    """Every rank's ``compute()`` (e.g. the features of its share of a test set), gathered on
    every rank in rank order, ranks that return None left out; should ``compute`` raise on any
    rank, every rank raises (``run_together``) before the gather."""
    local = run_together(compute)
    return [shard for shard in all_gather_objects(local) if shard is not None]


def main_result(compute):
    """``compute()`` run on the main process only (an error there stops every rank), its result
    handed to every rank."""
    return broadcast_object(run_together(lambda: compute() if is_main() else None))


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BN running statistics) on every rank, as before an evaluation: under DDP
    each rank updates them from its own batch after the forward's broadcast."""
    if is_dist():
        for b in model.buffers():
            dist.broadcast(b, src=0)
