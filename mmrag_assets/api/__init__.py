"""HTTP door: ``mmrag serve`` runs :func:`create_app` (127.0.0.1 by default, optional bearer token).

``app`` builds the routes, ``guard`` what is refused before them (Host, body size, bad text,
tokens, binds), ``models`` the bounded request/response shapes, ``warm`` the start-up load,
``static/`` the search page.
"""

from mmrag_assets.api.app import create_app, serve

__all__ = ["create_app", "serve"]
