"""The reports screen (templates/reports/): ``views`` the blueprint, its form and read model."""
