"""Edge sites (docs/edge.md): the site settings, the uplink and downlink to the centre, the
handoff of orders a site cannot serve, `fulfil edge status`, and the relay tests cut."""
