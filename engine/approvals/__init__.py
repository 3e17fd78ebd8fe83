"""The approval workflow: the only way an allocation becomes ACTIVE."""
