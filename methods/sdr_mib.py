"""SDR + MiB (the combination reported in the SDR paper): SDR's losses plus MiB's classifier
initialisation, composed from the two methods' parts (SDR's class and MiB's BackgroundInit
mixin), not re-written."""

from __future__ import annotations

from methods.mib import BackgroundInit
from methods.registry import register
from methods.sdr import SDR


@register
class SDRMiB(BackgroundInit, SDR):
    name = "sdr+mib"
    description = "SDR with MiB's background-based initialisation of the new classifier rows"
    # Same hyperparameters as SDR (Michieli & Zanuttigh, CVPR 2021, implementation details).
