"""fulfil: operators package."""
