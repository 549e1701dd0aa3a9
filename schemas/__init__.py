"""fulfil: schemas package."""
