"""``python -m lare2lib``: the same commands as the ``lare2`` console script."""

import sys

from lare2lib.pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m lare2lib"))
