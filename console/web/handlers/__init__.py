"""The handlers screens (templates/handlers/): ``views`` the blueprint and its read model."""
