"""Imports every built-in strategy module so that each registers itself."""
from . import badge, cal, coreset, crb, entropy, mc_dropout, random_sampling  # noqa: F401
