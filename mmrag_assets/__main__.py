"""``python -m mmrag_assets``: the ``mmrag`` command line."""

import sys

from mmrag_assets.cli import main

sys.exit(main())
