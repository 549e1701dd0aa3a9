"""Abnormal-order flags in the routing step: computed before the rules run, carried by the order.

Issue 8: an abnormal order (a likely duplicate across channels, a quantity far outside its sku's
or customer's norm, an undeliverable or inconsistent address) is flagged within a second of its
arrival, *on its first decision*, so a business rule can hold it (`order.flags` in
operators/rules). The router adds `OrderFlagger.commands(created)` to the wave's first round
trip (the order-book read), then judges the wave's new orders with the pure checks of
`operators.watch.abnormal` against the history shared by every router (`state.order_marks`),
before the rules run: the flags cost no round trip of their own.

Where the flags live: in the order's `attrs["flags"]` (`[{pattern, reason}]`). The order data is
stored in the order book with every decision, so the flags are computed once, for
`order.created`, and every later version of the order (an approval, an address change, a
re-route) carries the same flags without judging it again; the decision builders copy them onto
each decision (`operators.decisions`). A replayed event is re-emitted from its record (flags
included); a replay of an order whose record was never written is judged again, and the
history's per-order idempotency (`state/lua/order_marks.lua`) gives it the same flags.

Off switch and thresholds: the routing config's `abnormal` section (`enabled`, and the same
threshold names as the watchtower's `abnormal` section, operators/watch/settings.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from prometheus_client import Counter

from fulfil.config import Config
from operators.network import Network
from operators.orders import OrderData
from operators.watch.abnormal import (
    PATTERNS,
    SeenOrder,
    assess_order,
    flag_payload,
    order_keys,
    router_settings,
)
from operators.watch.facts import NetInfo
from state.ledger import Ledger
from state.order_marks import MarkRequest, OrderMarks

FLAGGED = Counter("fulfil_order_flags_total",
                  "Orders flagged as abnormal on their first decision, per pattern", ["pattern"])
_FLAGGED = {p: FLAGGED.labels(pattern=p) for p in PATTERNS}


Finish = Callable[[list[Any]], dict[str, OrderData]]
_NO_SEEN: Mapping[str, SeenOrder] = MappingProxyType({})


class OrderFlagger:
    """Flags a wave's new orders (see the module docstring); one per router."""

    def __init__(self, config: Config, network: Network, ledger: Ledger) -> None:
        self.enabled, self.cfg = router_settings(config.abnormal)
        self._net = NetInfo(network)
        self._marks = OrderMarks(ledger, config.redis_prefix, self.cfg.duplicate_window_ms,
                                 self.cfg.norm_ttl_ms, judge_min=self.cfg.qty_min,
                                 flush_s=self.cfg.norm_flush_ms / 1000,
                                 outlier=(self.cfg.qty_min_history, self.cfg.qty_factor,
                                          self.cfg.qty_z))

    def commands(self, created: Mapping[str, tuple[dict, OrderData]]
                 ) -> tuple[list[tuple[Any, ...]], Finish | None]:
        """The history's script calls for the wave's `order.created` events ({order id: (event,
        order)}), to ride in the wave's first round trip (the order-book read), and the step
        that turns their replies into the flagged orders ({order id: order with `flags`}).

        Every `order.created` of the wave is marked, also one that turns out to be a replay of
        a recorded order: the script is idempotent per order id (it answers with the history the
        order got the first time and adds nothing), and a replay is re-emitted from its record.
        """
        if not self.enabled or not created:
            return [], None
        items = list(created.values())
        # OrderKeys's fields are MarkRequest's last four (a test pins it): no copy per field
        requests = [MarkRequest(order.order_id, order.channel, order.event_time, *order_keys(ev))
                    for ev, order in items]
        cmds, parse = self._marks.commands(requests)
        # Only the fingerprints are needed after the round trip: the requests (and their
        # tuples) are freed before it, so the garbage collector never sees them.
        fps = [r.fingerprint for r in requests]
        del requests
        net, cfg = self._net, self.cfg

        def finish(replies: list[Any]) -> dict[str, OrderData]:
            flagged: dict[str, OrderData] = {}
            for (ev, order), fp, history in zip(items, fps, parse(replies), strict=True):
                seen = {fp: history.seen} if history.seen and fp else _NO_SEEN
                flags = assess_order(ev, net=net, sku_norms=history.skus,
                                     customer_norm=history.customer, seen=seen, cfg=cfg, fp=fp)
                if flags:
                    flagged[order.order_id] = replace(
                        order, attrs={**order.attrs, "flags": flag_payload(flags)})
                    for f in flags:
                        _FLAGGED[f.pattern].inc()
            return flagged

        return cmds, finish
