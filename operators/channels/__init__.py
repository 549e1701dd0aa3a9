"""Sales channels as configuration: mapping files that turn a channel's raw order payload into
fulfil's canonical `order.created` event (docs/channels.md).

Pure logic only (no Kafka, no Redis): the mapping language (`yamltree` -> `compiler` with
`paths`, `values`, `functions`), exact decoding of payloads (`decode`), and webhook signatures
(`signatures`). The flow (`dataflows/channels.py`) and the gateway (`fulfil/gateway.py`) wire it.
"""

from operators.channels.decode import decode_payload
from operators.channels.mapper import ChannelMapping, compile_mapping, load_mapping
from operators.channels.model import MapFailure
from operators.channels.yamltree import MappingFileError, Problem

__all__ = [
    "ChannelMapping",
    "MapFailure",
    "MappingFileError",
    "Problem",
    "compile_mapping",
    "decode_payload",
    "load_mapping",
]
