"""The only package that writes SQL (SQLAlchemy Core): tables, repository, indexing, dialects."""
