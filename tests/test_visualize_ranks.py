import numpy as np
from PIL import Image

from datasets import MARS
from engine.visualize import draw_ranked_gallery


def test_ranked_gallery_frames_matches_green(tiny_mars, tmp_path):
    mars = MARS(tiny_mars[0])
    q, g = mars.query[:3], mars.gallery
    rng = np.random.default_rng(0)
    dist = rng.random((len(q), len(g))).astype(np.float32)
    out = draw_ranked_gallery(dist, q, g, str(tmp_path / "r.png"), topk=5, size=(32, 16))
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (3 * (32 + 16), 6 * 16 + 12 + 5 * 2, 3)
    g_pids, g_cams = np.array([t.pid for t in g]), np.array([t.camid for t in g])
    for r, t in enumerate(q):
        keep = np.flatnonzero(~((g_pids == t.pid) & (g_cams == t.camid)))  # protocol: same-camera matches skipped
        order = keep[np.argsort(dist[r, keep], kind="stable")[:5]]
        for k, gi in enumerate(order):
            pixel = img[r * 48, 16 + 12 + k * 18]  # top-left corner of the k-th frame
            expected = (0, 170, 0) if g_pids[gi] == t.pid else (220, 0, 0)
            assert tuple(pixel) == expected
