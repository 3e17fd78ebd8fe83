"""Shared storage plumbing: connection (embedded PostgreSQL or TRADEFLOW_DATABASE_URL, feature
detection), migrations and bulk COPY/upsert. It imports no other engine package; each domain
package keeps its own tables' queries in its ``store`` module."""
