"""rlcpc's encoders as ``torch.nn.Module``s, written from the same definitions as the
Rust networks (``src/nn/``), channels-last inputs as rlcpc's. Each module's state-dict
names are rlcpc's tensor names without ``encoder.``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from ._encoder import Encoder

LN_EPS = 1e-5  # rlcpc's LayerNorm, channel norm and waveform standardisation
BN_EPS = 1e-5  # BatchNorm (PyTorch's default)


class Mlp(nn.Module):
    """Fully connected layers with the activation after each (``mlp``)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], activation: str) -> None:
        super().__init__()
        dims = [in_dim] + list(hidden)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.activation = {"tanh": torch.tanh, "relu": F.relu}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.mlp:
            h = self.activation(layer(h))
        return h


class ImpalaConv(nn.Module):
    """IMPALA's shallow conv net (``conv``) on ``[N, H, W, C]`` observations scaled by
    ``input_scale``: conv 16x8x8 stride 4, ReLU, conv 32x4x4 stride 2, ReLU, FC, ReLU."""

    def __init__(self, height: int, width: int, channels: int, fc: int, input_scale: float) -> None:
        super().__init__()

        def out(x: int) -> int:
            return ((x - 8) // 4 + 1 - 4) // 2 + 1

        self.conv1 = nn.Conv2d(channels, 16, 8, stride=4)
        self.conv2 = nn.Conv2d(16, 32, 4, stride=2)
        self.fc = nn.Linear(32 * out(height) * out(width), fc)
        self.input_scale = input_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x.permute(0, 3, 1, 2) * self.input_scale))
        h = F.relu(self.conv2(h))
        return F.relu(self.fc(h.flatten(1)))


class _Affine(nn.Module):
    """A per-channel gain and shift (``weight``, ``bias``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))


class _AudioLayer(nn.Module):
    """One strided 1-D convolution (``weight`` ``[C_out, C_in, k]``, ``bias``), with its
    channel norm where the encoder has one."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, channel_norm: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c_out, c_in, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.norm = _Affine(c_out) if channel_norm else None
        self.stride = stride

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # rlcpc pads (k - s) / 2 on the left and up to whole frames on the right, so that
        # L samples give ceil(L / s) outputs.
        k, s = self.weight.shape[-1], self.stride
        length = h.shape[-1]
        out = -(-length // s)
        left = (k - s) // 2
        right = (out + k // s - 1) * s - length - left
        h = F.conv1d(F.pad(h, (left, right)), self.weight, self.bias, stride=s)
        if self.norm is not None:
            h = F.layer_norm(h.transpose(1, 2), (h.shape[1],), self.norm.weight, self.norm.bias, LN_EPS)
            h = h.transpose(1, 2)
        return F.relu(h)


class AudioConv(nn.Module):
    """CPC's audio encoder (``audio``): ``[N, L]`` waveforms → ``[N, T, C]``."""

    def __init__(
        self,
        channels: int,
        strides: Sequence[int],
        kernels: Sequence[int],
        channel_norm: bool = False,
        normalize: bool = False,
        **_: Any,
    ) -> None:
        super().__init__()
        c_in = [1] + [channels] * (len(strides) - 1)
        self.conv = nn.ModuleList(
            _AudioLayer(ci, channels, k, s, channel_norm) for ci, s, k in zip(c_in, strides, kernels)
        )
        self.normalize = normalize

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave
        if self.normalize:
            x = x - x.mean(1, keepdim=True)
            x = x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + LN_EPS)
        h = x.unsqueeze(1)
        for layer in self.conv:
            h = layer(h)
        return h.transpose(1, 2)


class PatchConv(nn.Module):
    """Image CPC's patch encoder (``patches``): ``[N, H, W, C]`` images → patches of
    ``patch`` pixels every ``stride`` → 3x3 convolutions with ReLU (LayerNorm over each
    patch's positions and channels first, where enabled) → mean over positions →
    ``[N, rows, cols, D]``."""

    def __init__(
        self,
        height: int,
        width: int,
        channels: int,
        patch: int,
        stride: int,
        features: int,
        layers: int,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        c_in = [channels] + [features] * (layers - 1)
        self.conv = nn.ModuleList(nn.Conv2d(c, features, 3) for c in c_in)
        self.norm = nn.ModuleList(_Affine(features) for _ in range(layers)) if layer_norm else None
        self.patch, self.stride = patch, stride

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, h, w, c = images.shape
        for size in (h, w):
            if size < self.patch or (size - self.patch) % self.stride:
                raise ValueError(
                    f"patches of {self.patch} every {self.stride} do not tile {h}x{w} images exactly"
                )
        p = images.unfold(1, self.patch, self.stride).unfold(2, self.patch, self.stride)
        rows, cols = p.shape[1], p.shape[2]  # p: [N, rows, cols, C, P, P]
        h = p.reshape(n * rows * cols, c, self.patch, self.patch)
        for i, conv in enumerate(self.conv):
            h = conv(h)
            if self.norm is not None:
                g = self.norm[i]
                h = F.layer_norm(h, h.shape[1:], eps=LN_EPS)
                h = h * g.weight[:, None, None] + g.bias[:, None, None]
            h = F.relu(h)
        return h.mean((2, 3)).reshape(n, rows, cols, self.conv[-1].out_channels)


class SentenceConv(nn.Module):
    """Text CPC's sentence encoder (``text``): word embeddings, a 1-D convolution with
    ReLU, the mean over the positions inside the sentence → ``[N, D]``.

    ``forward(ids, lengths)``: ``ids`` ``[N, L]`` word ids padded with 0, ``lengths``
    ``[N]`` (default: all L); or ``forward(list_of_id_lists)``."""

    PAD = 0

    def __init__(self, vocab: int, embedding: int, kernel: int, features: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.conv = nn.Conv1d(embedding, features, kernel)
        self.kernel = kernel

    def forward(
        self, ids: torch.Tensor | Sequence[Sequence[int]], lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        if isinstance(ids, torch.Tensor):
            t = ids
        else:
            seqs = [list(s) for s in ids]
            if not seqs:
                return torch.zeros(0, self.conv.out_channels)
            lengths = torch.tensor([len(s) for s in seqs])
            width = max([len(s) for s in seqs] + [1])
            t = torch.tensor([s + [self.PAD] * (width - len(s)) for s in seqs], dtype=torch.long)
        n, length = t.shape
        if lengths is None:
            lengths = torch.full((n,), length)
        if length < self.kernel:
            t = F.pad(t, (0, self.kernel - length), value=self.PAD)
        h = F.relu(self.conv(self.embedding(t).transpose(1, 2)))  # [N, D, positions]
        valid = (lengths.to(h.device) - self.kernel + 1).clamp(min=1)
        mask = torch.arange(h.shape[2], device=h.device)[None, :] < valid[:, None]
        return (h * mask[:, None, :]).sum(2) / valid[:, None].to(h.dtype)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.shortcut = None
        if c_in != c_out or stride != 1:
            self.shortcut = nn.ModuleDict(
                {
                    "conv": nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                    "bn": nn.BatchNorm2d(c_out, eps=BN_EPS),
                }
            )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(h)))
        y = self.bn2(self.conv2(y))
        skip = h if self.shortcut is None else self.shortcut["bn"](self.shortcut["conv"](h))
        return F.relu(y + skip)


class ResNet(nn.Module):
    """The view trainers' small ResNet (``resnet``): ``[N, H, W, C]`` images in [0, 1] →
    ``[N, D]`` (a 3x3 stem, basic blocks, stride 2 from the second stage, global average
    pooling)."""

    def __init__(
        self, height: int, width: int, channels: int, widths: Sequence[int], blocks: Sequence[int]
    ) -> None:
        super().__init__()
        self.stem = nn.ModuleDict(
            {
                "conv": nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False),
                "bn": nn.BatchNorm2d(widths[0], eps=BN_EPS),
            }
        )
        layout, c = [], widths[0]
        for stage, (w, n) in enumerate(zip(widths, blocks)):
            for b in range(n):
                layout.append((c, w, 2 if stage > 0 and b == 0 else 1))
                c = w
        self.block = nn.ModuleList(_Block(*x) for x in layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem["bn"](self.stem["conv"](x.permute(0, 3, 1, 2))))
        for b in self.block:
            h = b(h)
        return h.mean((2, 3))


_KINDS = {
    "mlp": Mlp,
    "conv": ImpalaConv,
    "audio": AudioConv,
    "patches": PatchConv,
    "text": SentenceConv,
    "resnet": ResNet,
}


def to_torch(encoder: Encoder) -> nn.Module:
    """The module of ``encoder`` (an :class:`rlcpc.Encoder`) with its weights, in eval
    mode. Every rlcpc tensor must land in the module and every parameter and buffer of
    the module must come from the file (BatchNorm's batch counter aside)."""
    spec = {k: v for k, v in encoder.spec.items() if k != "kind"}
    module = _KINDS[encoder.kind](**spec)
    weights = {k[len("encoder.") :]: v for k, v in encoder.weights.items() if k.startswith("encoder.")}
    state = module.state_dict()
    wanted = {k for k in state if not k.endswith("num_batches_tracked")}
    missing, unused = wanted - weights.keys(), weights.keys() - wanted
    if missing or unused:
        raise ValueError(
            f"{encoder.path}: the {encoder.kind} module and the file's tensors differ "
            f"(missing from the file: {sorted(missing)}, not in the module: {sorted(unused)})"
        )
    with torch.no_grad():
        for k in wanted:
            if tuple(state[k].shape) != weights[k].shape:
                need = tuple(state[k].shape)
                raise ValueError(f"{encoder.path}: tensor {k} is {weights[k].shape}, the module needs {need}")
            state[k].copy_(torch.from_numpy(weights[k]))
    return module.eval()


__all__ = ["to_torch"]
