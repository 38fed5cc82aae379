"""Imported by the forkserver after the definitions module (``forkserver.PRELOAD``): builds the code
location's definitions once (``definitions.loaded``, with ``MMRAG_OVERRIDES`` as the server's
environment has it), so that every run forked from the server reconstructs its job from them instead
of composing the config and assembling the definitions again (~1 s per run)."""

from mmrag_assets.definitions import loaded

loaded().get_repository_def()
