"""U-Net with a light stochastic head.

Training uses dropout in the head (dropout -> 3x3 conv -> ReLU -> channel dropout -> 1x1
conv). For Monte Carlo uncertainty only the last dropout is sampled (a stochastic output
layer): the whole network up to it (`hidden`) is deterministic and runs once per image.
The last dropout drops whole feature channels (Dropout2d), so a sample is the 1x1 output
convolution with some input channels switched off: T samples are one small batched matrix
product over T masked weight matrices, not T passes over dropped-out feature maps.
`mc_probabilities` is equal in distribution to T full passes with that dropout on
(`mc_probabilities_naive`; with the same random seed the samples are identical, see tests).

Shapes: input (N, C, H, W) with H, W divisible by 2**depth; output logits (N, K, H, W).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True))


class Head(nn.Module):
    def __init__(self, width: int, n_classes: int, p: float):
        super().__init__()
        self.drop1 = nn.Dropout(p)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.drop2 = nn.Dropout2d(p)
        self.out = nn.Conv2d(width, n_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop2(self.hidden(self.drop1(features))))

    def hidden(self, features: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(features))

    def samples(self, hidden: torch.Tensor, passes: int) -> torch.Tensor:
        """(T, N, K, H, W) logits with the output channel dropout on, whatever the module's
        mode. Masks are drawn exactly as `F.dropout2d` draws them (one (N, F, 1, 1) Bernoulli
        tensor per pass), so a seed gives the same samples as T stochastic forward passes."""
        p = self.drop2.p
        n, f = hidden.shape[:2]
        masks = torch.stack([torch.empty((n, f, 1, 1), dtype=hidden.dtype,
                                         device=hidden.device).bernoulli_(1 - p).div_(1 - p)
                             for _ in range(passes)])[..., 0, 0]           # (T, N, F)
        weight = self.out.weight[:, :, 0, 0].to(hidden.dtype)               # (K, F)
        masked = weight[None, None] * masks[:, :, None, :]                  # (T, N, K, F)
        logits = torch.einsum("tnkf,nfp->tnkp", masked, hidden.flatten(2))
        logits = logits + self.out.bias.to(hidden.dtype)[None, None, :, None]
        return logits.reshape(passes, n, -1, *hidden.shape[2:])


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, n_classes: int = 3, width: int = 32,
                 depth: int = 4, dropout: float = 0.2, bottleneck_dropout: float = 0.0):
        super().__init__()
        self.config = dict(in_channels=in_channels, n_classes=n_classes, width=width,
                           depth=depth, dropout=dropout, bottleneck_dropout=bottleneck_dropout)
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([ConvBlock(in_channels, widths[0])] + [
            ConvBlock(widths[i], widths[i + 1]) for i in range(depth)])
        self.bottleneck_drop = nn.Dropout2d(bottleneck_dropout)
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                 for i in reversed(range(depth))])
        self.dec = nn.ModuleList([ConvBlock(widths[i] * 2, widths[i])
                                  for i in reversed(range(depth))])
        self.head = Head(width, n_classes, dropout)

    @property
    def multiple(self) -> int:
        return 2 ** self.config["depth"]

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = self.bottleneck_drop(skips.pop())
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic part at inference: (N, width, H, W) features before the output
        dropout (eval mode)."""
        return self.head.hidden(self.trunk(x))


def mc_samples(head: Head, hidden: torch.Tensor, passes: int) -> torch.Tensor:
    """(T, N, K, H, W) softmax samples from T stochastic output layers on one `hidden`."""
    return F.softmax(head.samples(hidden, passes).float(), dim=2)


@torch.no_grad()
def mc_probabilities(model: UNet, x: torch.Tensor, passes: int) -> torch.Tensor:
    """(T, N, K, H, W) softmax samples: everything up to the output dropout once, the output
    layer T times."""
    was_training = model.training
    model.eval()
    try:
        return mc_samples(model.head, model.hidden(x), passes)
    finally:
        model.train(was_training)


@torch.no_grad()
def mc_probabilities_naive(model: UNet, x: torch.Tensor, passes: int) -> torch.Tensor:
    """Reference: T full forward passes with the output dropout on (tests, benchmarks)."""
    was_training = model.training
    model.eval()
    model.head.drop2.train(True)
    try:
        return torch.stack([F.softmax(model(x).float(), dim=1) for _ in range(passes)])
    finally:
        model.train(was_training)
