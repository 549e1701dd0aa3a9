"""fulfil: dataflows package."""
