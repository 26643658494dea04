"""The dashboard (templates/dashboard/): ``views`` the blueprint and its read model."""
