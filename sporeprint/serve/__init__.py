"""``sporeprint serve``: a local web page and JSON API over a store (read-only).

:class:`~sporeprint.serve.service.Service` does the work through the Python API;
:func:`~sporeprint.serve.app.create_app` puts the page, the JSON API and the store's
thumbnails on FastAPI. docs/serve.md describes the routes and the safety defaults.
"""

from sporeprint.serve.service import Limits, Service

__all__ = ["Limits", "Service", "create_app"]


def create_app(service: Service, host: str = "127.0.0.1"):
    from sporeprint.serve.app import create_app as _create_app

    return _create_app(service, host)
