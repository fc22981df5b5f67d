"""Encoders: any file rlcpc writes that holds one, with its spec, NumPy weights and
rlcpc's own forward pass."""

from __future__ import annotations

import json
import operator
import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from . import _native

#: A batch of texts for a text encoder: texts, or sequences of word ids.
Texts = Union[str, Iterable[str], Iterable[Sequence[int]]]


def load_encoder(path: str | os.PathLike[str]) -> Encoder:
    """The encoder in ``path``: a run directory (a trainer's ``encoder.safetensors``,
    else the agent's checkpoint), an agent ``checkpoint.safetensors``, a file written by
    ``rlcpc export-encoder``, or a trainer's checkpoint. Every tensor is checked against
    the stored spec."""
    return Encoder(path)


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

    path: pathlib.Path
    spec: dict[str, Any]
    context: dict[str, Any] | None
    kind: str
    out_dim: int
    metadata: dict[str, str]

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._native = _native.Encoder(os.fspath(path))
        self.path = pathlib.Path(self._native.path)
        self.spec = json.loads(self._native.spec_json())
        ctx = self._native.context_json()
        self.context = None if ctx is None else json.loads(ctx)
        self.kind = str(self.spec["kind"])
        self.out_dim = self._native.out_dim
        self.metadata = dict(self._native.metadata())
        self._weights: dict[str, npt.NDArray[np.float32]] | None = None

    @property
    def weights(self) -> dict[str, npt.NDArray[np.float32]]:
        """``{name: float32 array}`` (read from the file at first use)."""
        if self._weights is None:
            self._weights = dict(self._native.tensors())
        return self._weights

    def describe(self) -> str:
        """One line, e.g. ``mlp (input 4, hidden [64, 64], tanh)``."""
        return self._native.describe()

    def tokenize(self, texts: str | Iterable[str]) -> list[list[int]]:
        """Word ids of each text by rlcpc's tokenizer and the file's vocabulary (text
        encoders written by ``rlcpc pretrain text``)."""
        if isinstance(texts, str):
            texts = [texts]
        return self._native.tokenize(list(texts))

    def __call__(self, x: npt.ArrayLike | Texts) -> npt.NDArray[np.float32]:
        """Features of the batch ``x`` (see the class's table); a NumPy float32 array."""
        if self.kind == "text":
            if isinstance(x, str):
                items: list[Any] = [x]
            elif isinstance(x, Iterable):
                items = list(x)
            else:
                raise TypeError("a text encoder reads a list of texts or of word-id sequences")
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

    def __repr__(self) -> str:
        return f"<rlcpc.Encoder {self.describe()} from '{self.path}'>"
