"""``python -m pil_kmc``: the ``kmc`` command line."""

from .cli import entry

entry()
