"""fulfil: state package."""
