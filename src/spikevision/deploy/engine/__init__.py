"""Stage 1 of the deploy pipeline: a float model to the integer, multiplication-free engine (the reference).

``trace`` records the data flow, ``fold`` folds BN into the layers before it, ``layers`` holds the integer
counterparts of each layer kind, ``compile`` substitutes them (:func:`compile_integer`), and ``arithmetic``
counts every operation the engine executes (the proof the MFI audit rests on).
"""

from spikevision.deploy.engine.compile import IntegerModel, compile_integer, find_opaque
from spikevision.deploy.engine.layers import (
    EngineConfig, FloatFallback, IntAffine, IntNeuron, IntPool, IntSynapse, pow2_exponent, shift_add_terms,
)

__all__ = [
    "EngineConfig", "IntegerModel", "compile_integer", "find_opaque",
    "IntSynapse", "IntNeuron", "IntAffine", "IntPool", "FloatFallback", "pow2_exponent", "shift_add_terms",
]
