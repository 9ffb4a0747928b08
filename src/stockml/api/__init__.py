"""The prediction API (FastAPI): ``create_app`` builds it; ``functions/api`` serves it on Lambda."""

from stockml.api.main import create_app

__all__ = ["create_app"]
