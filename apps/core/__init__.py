"""Shared foundations: the permission check, live publishing, encrypted fields, tags and the change feed."""
