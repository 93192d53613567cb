"""Small tensor helpers shared by the zoo."""
from __future__ import annotations

import torch


def spatial_mean(x: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Mean over the last two (spatial) dims, as ``sum / (H * W)``.

    Same value as ``x.mean((2, 3))``, but on CPU its backward is about twice as fast (``mean``'s
    backward materialises an expanded division; ``sum``'s only an expand), which matters for the
    channel gates that run after every block.
    """
    return x.sum((-2, -1), keepdim=keepdim) / (x.shape[-2] * x.shape[-1])


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                    dropout_p: float = 0.0) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` that stays on a fused kernel when the value size differs
    from the query/key size: CPU's flash kernel needs one head size for all three (CUDA's
    memory-efficient kernel does not), so on CPU the smaller side is zero-padded (the scores and
    the output's first ``v`` channels are unchanged; the scale stays ``1/sqrt(q size)``). The
    caller keeps ``q, k, v`` contiguous and of one dtype: the fused kernels' other conditions."""
    dq, dv = q.shape[-1], v.shape[-1]
    if q.device.type != "cpu" or dq == dv:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale, dropout_p=dropout_p)
    scale = dq ** -0.5 if scale is None else scale
    pad = torch.nn.functional.pad
    if dq < dv:
        q, k = pad(q, (0, dv - dq)), pad(k, (0, dv - dq))
    else:
        v = pad(v, (0, dq - dv))
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale, dropout_p=dropout_p)[..., :dv]
