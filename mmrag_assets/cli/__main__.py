"""``python -m mmrag_assets.cli``: the ``mmrag`` command line."""

from mmrag_assets.cli import run

if __name__ == "__main__":  # spawned worker processes import this module again
    run()
