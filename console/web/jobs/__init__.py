"""The jobs screens (templates/jobs/): ``views`` the blueprint, ``actions`` the bulk verbs,
``details`` a job's page.
"""
