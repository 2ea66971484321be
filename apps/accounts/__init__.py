"""Users, teams, roles, memberships and API tokens."""
