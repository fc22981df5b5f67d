"""rlcpc from Python: train A2C agents (with or without the auxiliary CPC head) on rlcpc's
environments or any Gymnasium environment, evaluate them, and use any encoder rlcpc
writes from NumPy and PyTorch.

- :func:`train` trains like ``rlcpc train`` and returns a :class:`TrainResult` (the run
  directory, path-like, with the run's counters).
- :func:`evaluate` plays a checkpoint's policy and returns an :class:`EvalResult`;
  :func:`read_metrics` reads a run's log.
- :func:`load_encoder` reads an encoder (a run directory, an agent checkpoint, an
  exported encoder or a trainer's ``encoder.safetensors``): its spec, its weights as
  NumPy arrays, and rlcpc's own forward pass on NumPy arrays (CPU).
- :func:`to_torch` builds the same encoder as a ``torch.nn.Module`` (needs PyTorch).

Errors from rlcpc (a bad config key, file or input) are :class:`RlcpcError`, with the
message the command line prints.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._encoder import Encoder, load_encoder
from ._native import RlcpcError, __version__
from ._train import EvalResult, TrainInterrupted, TrainResult, evaluate, presets, read_metrics, train

if TYPE_CHECKING:
    import torch


def to_torch(source: str | os.PathLike[str] | Encoder) -> torch.nn.Module:
    """The encoder of ``source`` (a path, run directory or :class:`Encoder`) as a
    ``torch.nn.Module`` in eval mode, on the CPU, in float32.

    Its state dict holds rlcpc's tensor names without the ``encoder.`` prefix, and its
    outputs equal rlcpc's forward pass (:class:`Encoder`) on the same inputs, to float
    rounding. Inputs are
    channels-last, as rlcpc's: ``[N, H, W, C]`` images, ``[N, L]`` waveforms.
    """
    try:
        from . import _torch
    except ImportError as e:  # torch itself is missing
        raise ImportError(f"rlcpc.to_torch needs PyTorch ({e}); install it with `pip install torch`") from e
    return _torch.to_torch(source if isinstance(source, Encoder) else load_encoder(source))


__all__ = [
    "Encoder",
    "EvalResult",
    "RlcpcError",
    "TrainInterrupted",
    "TrainResult",
    "__version__",
    "evaluate",
    "load_encoder",
    "presets",
    "read_metrics",
    "to_torch",
    "train",
]
