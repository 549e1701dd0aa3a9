"""Pure logic of edge sites (docs/edge.md): the site network, and what crosses each link.

Nothing here talks to Kafka or Redis: the links (`fulfil/edge/`) consume, call these functions
on plain data, and act on what they return (messages to send, ledger effects, dead letters).
"""
