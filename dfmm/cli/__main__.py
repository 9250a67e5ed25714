"""``python -m dfmm.cli``: the ``dfmm`` command (e.g. under ``accelerate launch -m dfmm.cli``)."""

import sys

from dfmm.cli import main

if __name__ == "__main__":
    sys.exit(main())
