"""The alert bridge: the alerts topic to PagerDuty, Slack, Feishu/Lark, DingTalk, WeCom, webhooks.

`config` reads the routes file, `delivery` posts one alert (bodies from
`operators.alert_format`), `ratelimit` paces each destination, `bridge` runs one worker per
destination that commits its position (in Redis, `state.alert_offsets`) only after delivery.
Run it with `fulfil alerts bridge --config routes.yaml`.
"""
