"""Interactive Brokers (kind ``ibkr``)."""
