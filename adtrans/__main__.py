"""``python -m adtrans``: the same command line as the ``adtrans`` console script."""

import sys

from adtrans.cli import main

if __name__ == "__main__":
    sys.exit(main())
