"""Errors and warnings that name the place in a cfg or weights file where something is wrong."""
from __future__ import annotations


class DarkcfgError(Exception):
    """Base class of every error darkcfg raises for bad user input; its message is one line."""


class CfgError(DarkcfgError, ValueError):
    """A .cfg file cannot be read or built; the message names file:line, layer index and type."""


class WeightsError(DarkcfgError, ValueError):
    """A .weights file does not fit the network: says which layer and how many bytes."""


class DarkcfgWarning(UserWarning):
    """Base class of darkcfg's warnings: one line each, naming the file (and line) concerned. Warnings take one
    route, the `warnings` module (the command line prints each as `warning: ...` on stderr); notes go to the
    "darkcfg" logger; neither ever goes to stdout, which holds results."""


class CfgWarning(DarkcfgWarning):
    """A cfg option nobody reads, or a value the reference accepts but silently replaces."""
