"""Pictures a person would rather look at.

    python tools/visualize.py ranks CFG --checkpoint CKPT [--out ranks.png] [--num-queries 8] [KEY VALUE ...]
        each query tracklet's middle frame beside its top-10 gallery tracklets
        (true matches framed green, others red)
    python tools/visualize.py attention CFG --checkpoint CKPT VIDEO_OR_TRACKLET_DIR [--out attn.png]
        attention maps of the model's attention blocks overlaid on the frames of a clip
"""

import _bootstrap


def main(argv=None):
    p = _bootstrap.parser(__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("ranks")
    r.add_argument("config")
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--out", default="ranks.png")
    r.add_argument("--num-queries", type=int, default=8)
    r.add_argument("--topk", type=int, default=10)
    a = sub.add_parser("attention")
    a.add_argument("config")
    a.add_argument("--checkpoint", required=True)
    a.add_argument("input", help="a video file or a folder of frames (a tracklet)")
    a.add_argument("--out", default="attention.png")
    args, extra = p.parse_known_args(argv)  # what is left are KEY VALUE config overrides
    unknown = [x for x in extra if x.startswith("--")]
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = extra
    if args.what == "ranks":
        from engine.visualize import visualize_ranks
        table, out = visualize_ranks(args.config, args.checkpoint, args.out, args.overrides, args.num_queries,
                                     args.topk)
        print(table)
        print(f"wrote {out}")
    else:
        from engine.attention_visualize import visualize_attention
        print(f"wrote {visualize_attention(args.config, args.checkpoint, args.input, args.out, args.overrides)}")


if __name__ == "__main__":
    _bootstrap.run(main)
