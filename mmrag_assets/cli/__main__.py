"""``python -m mmrag_assets.cli``: the ``mmrag`` command line."""

import sys

from mmrag_assets.cli import main

sys.exit(main())
