"""``python -m weightlab``: the same as the ``weightlab`` command."""

import sys

from weightlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
