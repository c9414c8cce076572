"""The FastAPI seller service."""
