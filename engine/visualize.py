"""Pictures: ranked re-ID galleries, confusion matrices."""
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


def _blues(x: np.ndarray) -> np.ndarray:
    """(...,) values in [0, 1] -> (..., 3) uint8, white to dark blue."""
    lo, hi = np.array([247, 251, 255], np.float64), np.array([8, 48, 107], np.float64)
    return (lo + np.clip(x, 0, 1)[..., None] * (hi - lo)).round().astype(np.uint8)


def draw_confusion_matrix(cm: np.ndarray, classes, out_png: str | None = None, cell: int | None = None) -> Image.Image:
    """Row-normalised confusion matrix (rows = true class, columns = predicted) as a heatmap.

    Colour follows the square root of the rate, so that rare confusions stay visible. Class names
    label the rows (and numbers the columns) when cells are big enough to read, every tenth class
    is marked otherwise; the diagonal rate is printed in cells of 24 px and more. Returns the image; saves it when
    ``out_png`` is given."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    cell = cell or int(np.clip(900 // max(k, 1), 4, 40))
    labelled = cell >= 10
    left = (min(max(len(str(c)) for c in classes), 24) * 6 + 30) if labelled else 24
    top = 28 if labelled else 0
    heat = Image.fromarray(_blues(np.sqrt(rates))).resize((k * cell, k * cell), Image.NEAREST)
    footer = "rows: true class, columns: predicted (row-normalised, colour ~ sqrt)"
    canvas = Image.new("RGB", (max(left + k * cell + 4, 6 * len(footer) + 4), top + k * cell + 20), "white")
    canvas.paste(heat, (left, top))
    draw = ImageDraw.Draw(canvas)
    if labelled:
        for i, name in enumerate(classes):
            y = top + i * cell + (cell - 10) // 2
            draw.text((2, y), f"{i:>3} {str(name)[:24]}", fill="black")
            draw.text((left + i * cell + 1, 14 if i % 2 else 2), str(i), fill="black")
    else:
        for i in range(0, k, 10):
            draw.text((2, top + i * cell), str(i), fill="black")
            draw.line([(left - 4, top + i * cell), (left - 1, top + i * cell)], fill="black")
    if cell >= 24:
        for i in range(k):
            colour = "white" if rates[i, i] > 0.5 else "black"
            draw.text((left + i * cell + 2, top + i * cell + cell // 2 - 5), f"{rates[i, i]:.2f}"[1:] if rates[i, i] < 1
                      else "1.0", fill=colour)
    draw.text((2, top + k * cell + 4), footer, fill="black")
    if out_png:
        os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
        canvas.save(out_png)
    return canvas


def visualize_ranks(config: str, checkpoint: str, out_png: str, overrides=(), num_queries: int = 8,
                    topk: int = 10) -> tuple[str, str]:
    """``tools/visualize.py ranks``: evaluate a re-ID checkpoint on the config's query/gallery and
    draw the ranked gallery of the first queries. Returns (metrics table, PNG path)."""
    from .config import load_config
    from .errors import ConfigError
    from .evaluate import load_trained
    task = load_config(config, list(overrides)).TASK
    if task != "reid":
        raise ConfigError(f"visualize.py ranks draws re-ID rankings, but {config!r} says TASK {task}: pass a "
                          "re-ID config (for action models see tools/test.py's confusion matrix)")
    cfg, task, model, device = load_trained(config, checkpoint, overrides)
    metrics = task.evaluate(model, device)
    d = task.last_details
    out = draw_ranked_gallery(d["distmat"], task.dataset.query, task.dataset.gallery, out_png, num_queries, topk)
    return task.format(metrics, "checkpoint"), out
