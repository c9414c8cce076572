"""Adapters that bind the engine to Redis, SQLAlchemy and FastAPI.

Each adapter lives in its own subpackage and needs its extra (``tierpolicy[redis]``,
``tierpolicy[fastapi]``); importing this package needs none of them.
"""

from ._stores import rate_limit_store

__all__ = ["rate_limit_store"]
