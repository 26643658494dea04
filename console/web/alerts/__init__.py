"""Screens of alerts (templates/alerts/): ``views`` the blueprint, ``forms`` the rule and contact
forms.
"""
