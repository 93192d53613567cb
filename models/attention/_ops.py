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


def _window_origins(h: int, w: int, device) -> torch.Tensor:
    """Flat index ``2i * w + 2j`` of the top-left pixel of every 2x2 window, ``(ceil(h/2), ceil(w/2))``."""
    rows = torch.arange(0, h, 2, device=device)
    return rows[:, None] * w + torch.arange(0, w, 2, device=device)[None, :]


class _TokenMaxPool2x2(torch.autograd.Function):
    """2x2 max pooling (stride 2, ``ceil_mode``) of token maps ``(B, H, W, D)`` by ``max_pool2d``
    itself (its channels-last kernel), keeping for backward only each maximum's offset in its
    window, one byte per output (``max_pool2d`` keeps its input and int64 indices: 3x the input's
    size in float32). Values and gradients are ``max_pool2d``'s, bit for bit."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        b, h, w, d = t.shape
        values, index = torch.nn.functional.max_pool2d(t.permute(0, 3, 1, 2), 2, ceil_mode=True, return_indices=True)
        offset = index - _window_origins(h, w, t.device)                  # 0, 1, w or w + 1
        ctx.save_for_backward(offset.to(torch.uint8 if w < 255 else torch.int32))
        ctx.size = (h, w)
        return values.permute(0, 2, 3, 1).contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable      # a gradient of the gradient raises, never is wrong
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (offset,) = ctx.saved_tensors
        h, w = ctx.size
        b, d = grad.shape[0], grad.shape[-1]
        index = (offset.long() + _window_origins(h, w, grad.device)).permute(0, 2, 3, 1).reshape(b, -1, d)
        out = grad.new_zeros(b, h * w, d).scatter_(1, index, grad.reshape(b, -1, d))   # windows do not overlap
        return out.view(b, h, w, d)


def token_max_pool_2x2(t: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, D) -> (B, ceil(H/2), ceil(W/2), D)``, contiguous: ``nn.MaxPool2d(2, ceil_mode=True)``
    on channel-last token maps, keeping one byte per output for backward when a gradient is needed
    (``torch.jit.trace`` records the plain op: a traced graph has no Python autograd functions)."""
    if torch.is_grad_enabled() and t.requires_grad and not torch.jit.is_tracing():
        return _TokenMaxPool2x2.apply(t)
    return torch.nn.functional.max_pool2d(t.permute(0, 3, 1, 2), 2, ceil_mode=True).permute(0, 2, 3, 1).contiguous()
