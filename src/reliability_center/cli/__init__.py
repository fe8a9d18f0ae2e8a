"""relctl: the on-call engineer's CLI (also usable as a kubectl plugin, ``kubectl relctl``)."""

from reliability_center.cli.main import main

__all__ = ["main"]
