"""The `modal` command (placeholder until the CLI lands)."""


def main() -> None:
    raise SystemExit("modal CLI: not yet available")
