"""``python -m fastconc``: the same as the ``fastconc`` command."""

import sys

from fastconc._bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
