"""``python -m mmrag_assets``: the ``mmrag`` command line."""

import sys

from mmrag_assets.cli import main

if __name__ == "__main__":  # spawned worker processes import this module again
    sys.exit(main())
