"""CLI subcommands for this area (placeholder)."""


def register(sub) -> None:
    """Add this area's subcommands to the `animekit` parser."""
