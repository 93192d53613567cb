"""Plain reference formulations of stn, dcn, dcnv2, draw, ram, csra, rga, residual_attention and
scconv, for tests and benchmarks (not auto-imported).

Each ``ref(module, x) -> y`` recomputes the module's output from its own parameters the direct
way: explicit bilinear sampling by gather, im2col + matmul, explicit filter matrices, per-class
loops, materialised relation matrices. Sub-layers that are not the point (conv + BN embeddings)
are called as they are. Compare with the module in eval mode (BatchNorm uses running stats).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bilinear_sample(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Sample ``x (B, C, H, W)`` at pixel coordinates ``py, px (B, P)`` (0-based), zeros outside.

    Returns ``(B, C, P)``. Gathers the four neighbours from a zero-padded copy.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1)).flatten(2)                       # (B, C, (H+2)(W+2))
    y0, x0 = torch.floor(py), torch.floor(px)
    out = 0
    for dy in (0, 1):
        for dx in (0, 1):
            yi, xi = y0 + dy, x0 + dx
            weight = (1 - (py - yi).abs()) * (1 - (px - xi).abs())     # (B, P)
            yi = yi.clamp(-1, h).long() + 1
            xi = xi.clamp(-1, w).long() + 1
            index = (yi * (w + 2) + xi)[:, None, :].expand(b, c, -1)
            out = out + torch.gather(padded, 2, index) * weight[:, None, :].to(x.dtype)
    return out


def _normalised_centres(n: int, align_corners: bool, device) -> torch.Tensor:
    i = torch.arange(n, device=device, dtype=torch.float32)
    return 2 * i / (n - 1) - 1 if align_corners else (2 * i + 1) / n - 1


def _to_pixels(coord: torch.Tensor, n: int, align_corners: bool) -> torch.Tensor:
    return (coord + 1) / 2 * (n - 1) if align_corners else ((coord + 1) * n - 1) / 2


def ref_stn(module, x: torch.Tensor) -> torch.Tensor:
    """Eq. (1) applied point by point: source = theta @ (x_t, y_t, 1), then bilinear sampling."""
    b, c, h, w = x.shape
    ac = module.align_corners
    theta = module.affine(x)                                               # (B, 2, 3)
    yy, xx = torch.meshgrid(_normalised_centres(h, ac, x.device),
                            _normalised_centres(w, ac, x.device), indexing="ij")
    target = torch.stack((xx.flatten(), yy.flatten(), torch.ones_like(xx.flatten())), 1)
    source = torch.einsum("bij,pj->bpi", theta, target)                   # (B, HW, 2)
    px = _to_pixels(source[..., 0], w, ac)
    py = _to_pixels(source[..., 1], h, ac)
    return bilinear_sample(x, py, px).reshape(b, c, h, w)


def ref_deform_conv(module, x: torch.Tensor) -> torch.Tensor:
    """DCN v1/v2 as im2col by bilinear gather, times the mask, then one matmul with the weight."""
    b, c, h, w = x.shape
    offset, mask = module.offsets_and_mask(x)
    weight = module.weight
    out_c, _, kh, kw = weight.shape
    k = kh * kw
    s, p, d, g = module.stride, module.padding, module.dilation, module.deformable_groups
    ho, wo = offset.shape[-2:]
    offset = offset.float().reshape(b, g, k, 2, ho, wo)                  # (dy, dx) per tap
    ky, kx = torch.meshgrid(torch.arange(kh), torch.arange(kw), indexing="ij")
    base_y = torch.arange(ho)[None, :, None] * s - p + ky.reshape(k, 1, 1) * d   # (K, Ho, 1)
    base_x = torch.arange(wo)[None, None, :] * s - p + kx.reshape(k, 1, 1) * d   # (K, 1, Wo)
    py = (base_y.to(x.device) + offset[:, :, :, 0]).reshape(b * g, -1)
    px = (base_x.to(x.device) + offset[:, :, :, 1]).reshape(b * g, -1)
    cols = bilinear_sample(x.float().reshape(b * g, c // g, h, w), py, px)  # (B*G, C/G, K*L)
    cols = cols.reshape(b, g, c // g, k, ho * wo)
    if mask is not None:
        cols = cols * mask.float().reshape(b, g, 1, k, ho * wo)
    cols = cols.reshape(b, c * k, ho * wo)
    out = torch.matmul(weight.float().reshape(out_c, c * k), cols)
    if module.bias is not None:
        out = out + module.bias.float()[:, None]
    return out.reshape(b, out_c, ho, wo).to(x.dtype)


def ref_draw(module, x: torch.Tensor, context=None) -> torch.Tensor:
    """Eq. (19)-(27) with the filter matrices written out row by row."""
    gx, gy, sigma2, delta, gamma = module.attention_params(x, context)
    n = module.glimpse_size

    def filters(center, size):
        a = torch.arange(1, size + 1, dtype=torch.float32, device=x.device)
        rows = []
        for i in range(1, n + 1):
            mu = center + (i - n / 2 - 0.5) * delta
            row = torch.exp(-(a[None, :] - mu[:, None]) ** 2 / (2 * sigma2[:, None]))
            rows.append(row / row.sum(1, keepdim=True).clamp_min(1e-8))
        return torch.stack(rows, 1)                                       # (B, N, size)

    f_x, f_y = filters(gx, x.shape[3]), filters(gy, x.shape[2])
    return gamma[:, None, None, None] * torch.einsum("bih,bchw,bjw->bcij", f_y, x.float(), f_x)


def ref_ram(module, x: torch.Tensor) -> torch.Tensor:
    """RAM in eval mode (policy mean), each retina patch read by explicit bilinear gather."""
    b, c, h, w = x.shape
    g = module.patch_size
    h_state = x.new_zeros(b, module.hidden_size)
    for _ in range(module.num_glimpses):
        loc = module.location(h_state).float()
        patches = []
        for s in range(module.num_scales):
            size = g * 2 ** s
            u = torch.arange(size, dtype=torch.float32, device=x.device) - (size - 1) / 2
            cx = ((loc[:, 0] + 1) * w - 1) / 2
            cy = ((loc[:, 1] + 1) * h - 1) / 2
            py = (cy[:, None, None] + u[None, :, None]).expand(b, size, size).reshape(b, -1)
            px = (cx[:, None, None] + u[None, None, :]).expand(b, size, size).reshape(b, -1)
            patch = bilinear_sample(x, py, px).reshape(b, c, g, 2 ** s, g, 2 ** s)
            patches.append(patch.mean((3, 5)))
        rho = torch.stack(patches, 1).flatten(1)
        h_g = F.relu(module.glimpse_what(rho))
        h_l = F.relu(module.glimpse_where(loc))
        glimpse = F.relu(module.glimpse_what_out(h_g) + module.glimpse_where_out(h_l))
        h_state = F.relu(module.core_state(h_state) + module.core_input(glimpse))
    return module.classifier(h_state)


def ref_csra(module, x: torch.Tensor) -> torch.Tensor:
    """CSRA with one loop over heads and classes and an explicit softmax per class."""
    b = x.shape[0]
    k = module.num_classes
    temperatures = list(module.soft_temperatures) + [math.inf] * module.num_max_heads
    weight = module.classifier.weight.flatten(1)                          # (heads*K, C)
    feats = x.flatten(2)                                                  # (B, C, HW)
    logits = torch.zeros(b, k, dtype=x.dtype, device=x.device)
    for head, t in enumerate(temperatures):
        for i in range(k):
            m = weight[head * k + i]
            if module.normalize:
                m = m / m.norm()
            s = torch.einsum("c,bcn->bn", m, feats)
            if math.isinf(t):
                attention = s.max(1).values
            else:
                e = torch.exp(t * s - (t * s).max(1, keepdim=True).values)
                attention = (e / e.sum(1, keepdim=True) * s).sum(1)
            logits[:, i] += s.mean(1) + module.lam * attention
    return logits


def _resample(weight: torch.Tensor, ref_size, size) -> torch.Tensor:
    (h0, w0), (h, w) = ref_size, size
    if (h0, w0) == (h, w):
        return weight
    maps = F.interpolate(weight.reshape(-1, 1, h0, w0), size=(h, w), mode="bilinear",
                         align_corners=False, antialias=True)
    return maps.reshape(weight.shape[0], -1) * (h0 * w0 / (h * w))


def ref_rga(module, x: torch.Tensor) -> torch.Tensor:
    """RGA as in the official code: relation matrices formed, ``[G_in, G_out]`` convolved."""
    b, c, h, w = x.shape
    n = h * w
    if "s" in module.mode:
        theta = module.theta_s(x).reshape(b, -1, n).permute(0, 2, 1)
        phi = module.phi_s(x).reshape(b, -1, n)
        g = torch.matmul(theta, phi)                                      # (B, HW, HW)
        joint = torch.cat((g.permute(0, 2, 1).reshape(b, n, h, w), g.reshape(b, n, h, w)), 1)
        weight = _resample(module.gg_s_weight, module.spatial_size, (h, w))
        emb = F.conv2d(joint, weight.reshape(weight.shape[0], 2 * n, 1, 1))
        emb = F.relu(module.gg_s_bn(emb.flatten(2))).reshape(b, -1, h, w)
        own = module.gx_s(x).mean(1, keepdim=True)
        x = torch.sigmoid(module.w_s(torch.cat((own, emb), 1))) * x
    if "c" in module.mode:
        xc = x.reshape(b, c, n).permute(0, 2, 1).unsqueeze(-1)            # (B, HW, C, 1)

        def embed(weight, bn):
            weight = _resample(weight, module.spatial_size, (h, w))
            out = F.conv2d(xc, weight.reshape(weight.shape[0], n, 1, 1)).squeeze(-1)
            return F.relu(bn(out))                                        # (B, inter_s, C)

        theta = embed(module.theta_c_weight, module.theta_c_bn).permute(0, 2, 1)
        phi = embed(module.phi_c_weight, module.phi_c_bn)
        g = torch.matmul(theta, phi)                                      # (B, C, C)
        joint = torch.cat((g.permute(0, 2, 1).unsqueeze(-1), g.unsqueeze(-1)), 1)
        emb = F.conv2d(joint, module.gg_c_weight.reshape(-1, 2 * c, 1, 1)).squeeze(-1)
        emb = F.relu(module.gg_c_bn(emb))
        own = embed(module.gx_c_weight, module.gx_c_bn).mean(1, keepdim=True)
        y = torch.cat((own, emb), 1).unsqueeze(-1)
        x = torch.sigmoid(module.w_c(y).transpose(1, 2)) * x
    return x


def ref_residual_attention(module, x: torch.Tensor) -> torch.Tensor:
    """``(1 + M) T`` with the hourglass written recursively, level by level."""
    def hourglass(y, level):
        z = module.down[level](F.max_pool2d(y, 3, stride=2, padding=1))
        if level == module.num_pools - 1:
            return z
        inner = F.interpolate(hourglass(z, level + 1), size=z.shape[-2:], mode="bilinear",
                              align_corners=True)
        return module.up[level](inner + module.skips[level](z))

    x = module.pre(x)
    trunk = module.trunk(x)
    mask = module.mask_head(F.interpolate(hourglass(x, 0), size=x.shape[-2:], mode="bilinear",
                                          align_corners=True))
    return module.post((1 + mask) * trunk)


def ref_scconv(module, x: torch.Tensor) -> torch.Tensor:
    """SCNet Eq. (1)-(4) with functional convs and an explicit nearest-neighbour upsampling."""
    k1, k4 = module.k1, module.k4
    conv2, bn2 = module.k2
    conv3, bn3 = module.k3
    x1, x2 = torch.chunk(x, 2, dim=1)
    h, w = x2.shape[-2:]

    def conv(t, layer):
        return F.conv2d(t, layer.weight, stride=layer.stride, padding=layer.padding,
                        dilation=layer.dilation)

    r = module.pooling_r
    t1 = F.avg_pool2d(x2, (min(r, h), min(r, w)))
    coarse = bn2(conv(t1, conv2))
    rows = (torch.arange(h) * coarse.shape[2] // h).to(x.device)   # nearest: floor(i * in / out)
    cols = (torch.arange(w) * coarse.shape[3] // w).to(x.device)
    up = coarse[:, :, rows][:, :, :, cols]
    y2 = conv(bn3(conv(x2, conv3)) * torch.sigmoid(x2 + up), k4)
    return torch.cat((conv(x1, k1), y2), 1)


REFERENCES = {
    "stn": ref_stn,
    "dcn": ref_deform_conv,
    "dcnv2": ref_deform_conv,
    "draw": ref_draw,
    "ram": ref_ram,
    "csra": ref_csra,
    "rga": ref_rga,
    "residual_attention": ref_residual_attention,
    "scconv": ref_scconv,
}
