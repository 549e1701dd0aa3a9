"""A site's network: the central network restricted to the nodes one edge site owns.

Why: an edge runs the same routing engine as the centre, on its own broker and Redis. Routing it
against the whole network would make it weigh nodes whose stock it does not hold; restricting the
network to the site's nodes makes "unroutable here" mean exactly "this site cannot serve it", the
trigger for handing the order to the centre. Regions, services, lanes and the postal table stay
whole (an edge store still ships anywhere its lanes reach, and still locates any address).

    >>> from operators.network import load_default
    >>> net = site_network(load_default(), ["N20", "N23"], "sul")
    >>> [n.id for n in net.nodes], net.version.endswith("+site.sul")
    (['N20', 'N23'], True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from operators.network import Network, NetworkError

#: A site id becomes part of topic names and Redis keys: keep it plain.
SITE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def check_site_id(site: str) -> str:
    """The site id, or NetworkError naming the rule it breaks."""
    if not isinstance(site, str) or not SITE_ID.fullmatch(site):
        raise NetworkError(f"site id {site!r} must be lower-case letters, digits, '-' or '_' "
                           "(at most 32, starting with a letter or digit)")
    return site


def site_network(central: Network, node_ids: Iterable[str], site: str) -> Network:
    """The central network with only `node_ids` (in the central order); version
    `<central>+site.<site>`, so every edge decision names the network it was made with."""
    check_site_id(site)
    wanted = list(dict.fromkeys(node_ids))
    if not wanted:
        raise NetworkError(f"site {site!r}: no nodes given")
    unknown = [n for n in wanted if n not in central.node_index]
    if unknown:
        raise NetworkError(f"site {site!r}: node(s) {unknown} are not in network "
                           f"{central.version!r}")
    data = central.to_dict()
    keep = set(wanted)
    data["nodes"] = [n for n in data["nodes"] if n["id"] in keep]
    data["version"] = f"{central.version}+site.{site}"
    data["built_from"] = {**data.get("built_from", {}), "site": site, "central": central.version}
    return Network.from_dict(data)
