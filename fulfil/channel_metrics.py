"""Prometheus metrics of the sales-channel side: the webhook gateway and the channels flow.

Kept beside `fulfil.metrics` (same registry) rather than in it, so the channel work does not
touch the engine's own metric list. Labels are bounded: `channel` is a *configured* channel name
(requests for unknown channels are counted under "-"), `outcome` a fixed set. Dead letters of
the channels flow are counted in the engine's `fulfil_dead_letters_total{topic,code}` too.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: accepted | duplicate | ignored | ping | bad-signature | unavailable | unknown-channel
WEBHOOKS = Counter(
    "fulfil_webhooks_total", "Webhook requests answered by the gateway, by outcome",
    ["channel", "outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "fulfil_webhook_seconds", "Time from request received to response, accepted webhooks",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0),
)
REPLAY_CHECK_ERRORS = Counter(
    "fulfil_webhook_replay_check_errors_total",
    "Replay checks that could not reach Redis (the webhook was published anyway: downstream "
    "is idempotent by order id)", ["channel"],
)
PUBLISH_FAILURES = Counter(
    "fulfil_webhook_publish_failures_total",
    "Webhook payloads the broker did not acknowledge (answered 503 when durability=acked)",
    ["channel"],
)
#: mapped | dead
CHANNEL_PAYLOADS = Counter(
    "fulfil_channel_payloads_total", "Raw channel payloads read by the channels flow, by outcome",
    ["channel", "outcome"],
)
