"""Webhook signatures: is this request body really from the channel?

Every scheme here is "HMAC of the raw request body with a shared secret, in a header"; they differ
in the header, the digest and its encoding:

| scheme      | header                    | value                                        |
|-------------|---------------------------|----------------------------------------------|
| shopify     | X-Shopify-Hmac-Sha256     | base64(HMAC-SHA256(app secret, body))        |
| woocommerce | X-WC-Webhook-Signature    | base64(HMAC-SHA256(webhook secret, body))    |
| hmac        | configurable (X-Signature)| hex or base64 of HMAC-SHA256/512, optional   |
|             |                           | prefix such as "sha256="                     |

Several secrets may be configured at once (rotation: add the new one, switch the channel, drop
the old); a body is genuine if any of them verifies it. Comparisons are constant-time
(`hmac.compare_digest`), and the body is verified exactly as received: re-serialising JSON would
change the bytes and break the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

DIGESTS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512, "sha1": hashlib.sha1}
ENCODINGS = ("base64", "hex")


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """How one channel signs: header, digest, encoding, value prefix; plus its headers for the
    webhook id (replays) and the event topic, and an unsigned ping body it may send."""

    name: str
    header: str
    digest: str = "sha256"
    encoding: str = "base64"
    prefix: str = ""
    webhook_id_header: str = ""
    topic_header: str = ""
    ping_body: str = ""  # a regular expression; such an unsigned body is answered, not published

    def __post_init__(self) -> None:
        if self.digest not in DIGESTS:
            raise ValueError(f"signature digest must be one of {', '.join(DIGESTS)}; "
                             f"got {self.digest!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"signature encoding must be one of {', '.join(ENCODINGS)}; "
                             f"got {self.encoding!r}")
        if not self.header:
            raise ValueError("signature header must be named")

    def sign(self, secret: bytes, body: bytes) -> str:
        """The header value the channel would send for `body` (tests, and channel simulators)."""
        mac = hmac.new(secret, body, DIGESTS[self.digest]).digest()
        text = base64.b64encode(mac).decode() if self.encoding == "base64" else mac.hex()
        return f"{self.prefix}{text}"

    def verify(self, secrets: tuple[bytes, ...], body: bytes,
               headers: Mapping[str, str]) -> bool:
        """True if the signature header matches `body` under any of `secrets`."""
        given = headers.get(self.header)
        if not given or not secrets:
            return False
        given = given.strip()
        if self.prefix:
            if not given.startswith(self.prefix):
                return False
            given = given[len(self.prefix):]
        if self.encoding == "hex":
            given = given.lower()
        try:
            presented = given.encode("ascii")
        except UnicodeEncodeError:
            return False
        ok = False
        for secret in secrets:  # no early exit: the time taken does not tell which secret
            mac = hmac.new(secret, body, DIGESTS[self.digest]).digest()
            expected = base64.b64encode(mac) if self.encoding == "base64" else mac.hex().encode()
            ok |= hmac.compare_digest(expected, presented)
        return ok


PRESETS: dict[str, SignatureScheme] = {
    "shopify": SignatureScheme("shopify", "X-Shopify-Hmac-Sha256",
                               webhook_id_header="X-Shopify-Webhook-Id",
                               topic_header="X-Shopify-Topic"),
    "woocommerce": SignatureScheme("woocommerce", "X-WC-Webhook-Signature",
                                   webhook_id_header="X-WC-Webhook-Delivery-ID",
                                   topic_header="X-WC-Webhook-Topic",
                                   ping_body=r"webhook_id=\d+"),
    "hmac": SignatureScheme("hmac", "X-Signature", encoding="hex",
                            webhook_id_header="X-Webhook-Id"),
}
