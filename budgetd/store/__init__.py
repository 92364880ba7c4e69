"""Storage: SQLAlchemy Core tables, the database handle, and one repository per table.

Repositories run statements on a connection handed to them and never commit; the domain's unit
of work (``Database.read`` / ``Database.write``) decides.
"""
