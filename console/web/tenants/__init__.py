"""The tenants screens (templates/tenants/): ``views`` the blueprint, ``read_model`` what the pages
read, ``limits_form`` and ``forms`` the forms, ``usage`` live usage against limits (shared with
the dashboard and New job).
"""
