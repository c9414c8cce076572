"""Adapters that bind the engine to Redis, SQLAlchemy and FastAPI."""
