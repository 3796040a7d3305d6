"""``python -m devicepool.cli``: the same as the ``devicepool`` command."""

import sys

from devicepool.cli import main

if __name__ == "__main__":
    sys.exit(main())
