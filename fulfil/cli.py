"""The `fulfil` command line (placeholder until the CLI lands)."""


def main() -> None:
    raise SystemExit("fulfil: CLI not built yet")
