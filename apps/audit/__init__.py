"""The audit trail: who did what to which object, with parameters and outcome. Append-only."""
