"""fulfil: real-time order fulfilment on streams."""
