"""The API tokens screen (templates/tokens/): ``views`` the blueprint (the token store is
``console/tokens.py``).
"""
