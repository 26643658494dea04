"""The failures screen (templates/failures/): ``views`` the blueprint and the failure groups it
reads.
"""
