"""Encoders: any file rlcpc writes that holds one, with its spec, NumPy weights and
rlcpc's own forward pass."""

import json
import operator
import os
import pathlib

import numpy as np

from . import _native


def load_encoder(path):
    """The encoder in ``path``: a run directory (a trainer's ``encoder.safetensors``,
    else the agent's checkpoint), an agent ``checkpoint.safetensors``, a file written by
    ``rlcpc export-encoder``, or a trainer's checkpoint. Every tensor is checked against
    the stored spec."""
    return Encoder(path)


def _out_dim(spec):
    kind = spec["kind"]
    if kind in ("mlp",):
        return spec["hidden"][-1]
    if kind == "conv":
        return spec["fc"]
    if kind == "audio":
        return spec["channels"]
    if kind == "resnet":
        return spec["widths"][-1]
    return spec["features"]  # patches, text


class Encoder:
    """An encoder read from a file.

    Attributes:
        path: the file read (a run directory resolves to its encoder or checkpoint).
        spec: the encoder's spec (``kind`` and its sizes), as rlcpc stores it.
        context: the context network's spec stored beside it (an agent's LSTM core, a
            trainer's GRU or masked grid network), or ``None``.
        kind: ``spec["kind"]``: ``mlp``, ``conv``, ``audio``, ``patches``, ``resnet``
            or ``text``.
        out_dim: the feature size D.
        weights: ``{name: float32 array}`` of ``encoder.*`` (and ``context.*``), the
            names and PyTorch layouts ``rlcpc export-encoder`` writes.
        metadata: the file's metadata (``rlcpc.*`` keys, JSON strings).

    Calling it runs rlcpc's forward pass on the CPU (float32, channels-last):

    ============  ==========================================  =========================
    kind          input                                       output
    ============  ==========================================  =========================
    ``mlp``       ``[N, in_dim]`` (or ``[N, ...]`` of in_dim)  ``[N, D]``
    ``conv``      ``[N, H, W, C]`` as the env gives (0-255)   ``[N, D]``
    ``audio``     ``[N, L]`` waveforms at the spec's rate     ``[N, ceil(L/prod(strides)), D]``
    ``patches``   ``[N, H, W, C]`` images in [0, 1]           ``[N, rows, cols, D]``
    ``resnet``    ``[N, H, W, C]`` images in [0, 1]           ``[N, D]``
    ``text``      texts (str) or lists of word ids            ``[N, D]``
    ============  ==========================================  =========================
    """

    def __init__(self, path):
        self._native = _native.Encoder(os.fspath(path))
        self.path = pathlib.Path(self._native.path)
        self.spec = json.loads(self._native.spec_json())
        ctx = self._native.context_json()
        self.context = None if ctx is None else json.loads(ctx)
        self.kind = self.spec["kind"]
        self.out_dim = _out_dim(self.spec)
        self.metadata = dict(self._native.metadata())
        self._weights = None

    @property
    def weights(self):
        if self._weights is None:
            self._weights = dict(self._native.tensors())
        return self._weights

    def describe(self):
        """One line, e.g. ``mlp (input 4, hidden [64, 64], tanh)``."""
        return self._native.describe()

    def tokenize(self, texts):
        """Word ids of each text by rlcpc's tokenizer and the file's vocabulary (text
        encoders written by ``rlcpc pretrain text``)."""
        if isinstance(texts, str):
            texts = [texts]
        return self._native.tokenize(list(texts))

    def __call__(self, x):
        """Features of the batch ``x`` (see the class's table); a NumPy float32 array."""
        if self.kind == "text":
            items = [x] if isinstance(x, str) else list(x)
            kinds = {isinstance(t, str) for t in items}
            if kinds == {True}:
                items = self.tokenize(items)
            elif kinds == {True, False}:
                raise TypeError(
                    "a text encoder reads a list of texts or a list of word-id sequences, not both"
                )
            try:
                ids = [[operator.index(i) for i in s] for s in items]
            except TypeError as e:
                raise TypeError("a text encoder reads a list of texts or of word-id sequences") from e
            if any(i < 0 for s in ids for i in s):
                raise ValueError("word ids must be non-negative")
            return self._native.forward_text(ids)
        arr = np.ascontiguousarray(x, dtype=np.float32)
        return self._native.forward(arr)

    def __repr__(self):
        return f"<rlcpc.Encoder {self.describe()} from '{self.path}'>"
