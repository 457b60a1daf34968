"""Training, evaluation, export and packaging of the ALL blood-smear classifier."""
