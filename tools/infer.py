"""Sliding-window inference on your own video files (mp4, avi, mkv, ...; any size and frame rate).

    python tools/infer.py CFG --checkpoint CKPT VIDEO [VIDEO ...] [--out results.json|results.csv]
        [--clip-len 8] [--frame-stride 2] [--window-stride 16] [--batch-size 8] [--topk 5]
        [--windows N] [--set KEY VALUE ...]

Action checkpoints: a table per video with the top-k labels and scores of every window and of
the whole video (mean of the window scores). Re-ID checkpoints: clip embeddings saved as
``<out stem>_<video stem>.npy`` (windows x D), with the window index in --out.
Clip length and frame stride default to the config's DATA.SEQ_LEN and DATA.FRAME_STRIDE; the
window stride (frames between window starts) to one window span. Unreadable videos are reported
and skipped; when none can be read the tool exits with status 2.
"""

import _bootstrap
from tqdm import tqdm

from engine.errors import UserError
from engine.infer import format_result, infer_videos


def main(argv=None):
    p = _bootstrap.parser(__doc__)
    p.add_argument("config")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("videos", nargs="+")
    p.add_argument("--out", default="results.json", help="results file, .json or .csv (written atomically)")
    p.add_argument("--clip-len", type=int, default=None, help="frames per window (default DATA.SEQ_LEN)")
    p.add_argument("--frame-stride", type=int, default=None, help="frame interval in a window (DATA.FRAME_STRIDE)")
    p.add_argument("--window-stride", type=int, default=None, help="frames between window starts (one span)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--windows", type=int, default=0, help="N evenly spaced windows instead of sliding ones")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY VALUE", help="config overrides")
    args = p.parse_args(argv)
    results = infer_videos(args.config, args.checkpoint, args.videos, args.out, args.set, args.windows, args.topk,
                           batch=args.batch_size, clip_len=args.clip_len, frame_stride=args.frame_stride,
                           window_stride=args.window_stride, on_result=lambda r: tqdm.write(format_result(r) + "\n"))
    skipped = sum("error" in r for r in results)
    print(f"{len(results) - skipped} videos done, {skipped} skipped; wrote {args.out}")
    if skipped == len(results):
        raise UserError(f"none of the {skipped} videos could be read (reasons above and in {args.out})")


if __name__ == "__main__":
    _bootstrap.run(main)
