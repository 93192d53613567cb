"""Pictures: ranked re-ID galleries."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw


def _thumb(path: str, size, border=None, width: int = 3) -> Image.Image:
    img = Image.open(path).convert("RGB").resize(size[::-1])
    if border:
        ImageDraw.Draw(img).rectangle([0, 0, img.width - 1, img.height - 1], outline=border, width=width)
    return img


def draw_ranked_gallery(distmat: np.ndarray, query, gallery, out_png: str, num_queries: int = 8,
                        topk: int = 10, size=(128, 64), query_ids=None) -> str:
    """One row per query: its middle frame, then its top-k gallery tracklets (middle frames), true
    matches framed green, others red. Gallery items of the query's pid AND camera are skipped, as
    in the evaluation protocol."""
    q_pids = np.array([t.pid for t in query])
    q_cams = np.array([t.camid for t in query])
    g_pids = np.array([t.pid for t in gallery])
    g_cams = np.array([t.camid for t in gallery])
    rows = list(query_ids) if query_ids is not None else list(range(min(num_queries, len(query))))
    h, w = size
    gap, label_h = 12, 16
    canvas = Image.new("RGB", ((topk + 1) * w + gap + topk * 2, len(rows) * (h + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, qi in enumerate(rows):
        y = r * (h + label_h)
        q = query[qi]
        canvas.paste(_thumb(q.frames[len(q.frames) // 2], size, (0, 0, 0)), (0, y))
        draw.text((2, y + h + 1), f"q pid {q.pid} c{q.camid + 1}", fill="black")
        keep = ~((g_pids == q_pids[qi]) & (g_cams == q_cams[qi]))
        cand = np.flatnonzero(keep)
        order = cand[np.argsort(distmat[qi, cand], kind="stable")[:topk]]
        for k, gi in enumerate(order):
            g = gallery[gi]
            ok = g.pid == q.pid
            x = (k + 1) * w + gap + k * 2
            canvas.paste(_thumb(g.frames[len(g.frames) // 2], size, (0, 170, 0) if ok else (220, 0, 0)), (x, y))
            draw.text((x + 2, y + h + 1), f"{k + 1}: {g.pid}", fill=(0, 120, 0) if ok else (200, 0, 0))
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    canvas.save(out_png)
    return out_png
