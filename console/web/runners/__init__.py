"""The runners screen (templates/runners/): ``views`` the blueprint."""
