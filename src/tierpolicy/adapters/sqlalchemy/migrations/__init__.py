"""The store's Alembic environment, run by :mod:`tierpolicy.adapters.sqlalchemy._migrate`."""
