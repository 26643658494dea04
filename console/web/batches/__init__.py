"""The batches screens (templates/batches/): ``views`` the blueprint, ``progress`` what a batch's
page reads."""
