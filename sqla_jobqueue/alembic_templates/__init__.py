"""The Alembic environment shipped with sqla_jobqueue (installed as
``sqla_jobqueue.alembic_templates``): ``env.py``, ``script.py.mako`` and a first revision
that creates the ``jobs`` table and its claim function."""
