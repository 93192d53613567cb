"""Print the attention zoo table: params, FLOPs, forward+backward time and peak memory.

    python tools/zoo.py                       # every registered module, aligned text
    python tools/zoo.py --markdown            # for the README
    python tools/zoo.py --names se cbam eca   # only these
    python tools/zoo.py --paper [--flops]     # ResNet-50 paper networks vs the papers' counts

Input sizes and how each column is measured: see ``engine/zoo_table.py`` and
``engine/paper_table.py`` (``--paper``).
"""
import sys

import _bootstrap

import torch

from engine.errors import InputError
from engine.zoo_table import format_table, zoo_rows
from models.attention import get_attention_class


def main(argv=None):
    p = _bootstrap.parser(__doc__)
    p.add_argument("--names", nargs="+", default=None, help="registry names (default: all)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per module (median)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-memory", action="store_true", help="skip the profiler memory pass")
    p.add_argument("--paper", action="store_true",
                   help="the paper table: each module's ResNet-50 paper network against its paper")
    p.add_argument("--flops", action="store_true", help="with --paper: also count GFLOPs (slow)")
    args = p.parse_args(argv)
    for name in args.names or ():
        try:
            get_attention_class(name)
        except KeyError as err:
            raise InputError(f"--names: {err.args[0]}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = lambda n: print(f"measuring {n} ...", file=sys.stderr, flush=True)  # noqa: E731
    if args.paper:
        from engine.paper_table import format_paper_table, paper_rows
        print(format_paper_table(paper_rows(args.names, args.flops, progress), markdown=args.markdown))
        return
    rows = zoo_rows(args.names, args.channels, args.repeats, memory=not args.no_memory, progress=progress)
    print(format_table(rows, markdown=args.markdown))


if __name__ == "__main__":
    _bootstrap.run(main)
