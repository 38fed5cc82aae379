"""A module that raises at import (not ImportError): Python's forkserver dies preloading it."""

raise RuntimeError("mmrag test: this module cannot be imported")
