"""The users screen (templates/users/): ``views`` the blueprint and its forms."""
