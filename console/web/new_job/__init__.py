"""The New job screen (templates/new_job/): ``views`` the blueprint, ``forms`` and ``fields`` the
forms, ``batch`` file uploads, ``previews`` the answers given while typing, ``quota`` the
tenant's usage beside the form.
"""
