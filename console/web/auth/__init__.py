"""Sign-in (templates/auth/): ``views`` the login and logout routes, the session user and role
checks.
"""
