"""Alembic's environment for the store: hands over to :func:`tierpolicy.adapters.sqlalchemy._migrate.run_environment`.

There is no ``alembic.ini`` and no URL here: ``_migrate.config`` builds the
configuration in code and passes an open connection, inside the transaction the caller
began, in ``config.attributes["connection"]``. The logic lives in ``_migrate`` because
Alembic runs this file under a made-up module name, outside the package.
"""

from tierpolicy.adapters.sqlalchemy._migrate import run_environment

run_environment()
