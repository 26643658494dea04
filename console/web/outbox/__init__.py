"""The outbox screens (templates/outbox/): ``views`` the blueprint, ``catch_all`` the signed
webhook receiver.
"""
