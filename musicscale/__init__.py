"""musicscale: scaling laws of character-level language models on symbolic music (ABC notation)."""

__version__ = "0.1.0"
