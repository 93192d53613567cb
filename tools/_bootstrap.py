"""Make the repository importable when a tool is run as ``python tools/<tool>.py``, and run a
tool's ``main`` so that an expected user error is one line (``--debug`` shows the traceback)."""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import warnings  # noqa: E402

# torch_geometric's import still calls torch.jit.script, which torch now flags on every run
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)

DEBUG_HELP = "show the full traceback of an error instead of its one-line message"


def parser(doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """The tool's argument parser, with ``--debug`` (handled by ``run``, listed for --help)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return p


def run(main, argv=None) -> None:
    """``main(argv)`` with ``--debug`` taken out of argv. A ``UserError`` (a bad file, key or
    argument) prints ``<tool>: error: <message>`` on stderr and exits with status 2; with
    ``--debug`` it propagates with its traceback."""
    from engine.errors import UserError, one_line
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        main(argv)
    except UserError as err:
        if debug:
            raise
        tool = os.path.basename(sys.argv[0]) or "vidattn"
        print(f"{tool}: error: {one_line(err)}", file=sys.stderr, flush=True)
        sys.exit(2)
