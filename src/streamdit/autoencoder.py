"""The space the DiT denoises in (DESIGN.md section 1, "Latent space"): pixels, the world autoencoder's
latents, or a local pretrained VAE's.

Every space maps videos ``[b, f, 3, H, W]`` in [-1, 1] to what the DiT sees, ``[b, f, channels, H / factor,
W / factor]``, and back, one frame at a time (no temporal compression at our scale, so a chunk decodes
on its own):
- ``PixelSpace``: the identity (the pixel ablation, ``model.space: pixel``);
- ``WorldAutoencoder``: a small convolutional autoencoder trained on the world (``autoencoder_training``),
  64x64x3 -> 8x8x8 by default, its latents normalised to zero mean and unit variance per channel with
  statistics of the training split stored beside the weights;
- ``PretrainedVAE``: a diffusers ``AutoencoderKL`` folder on disk (``autoencoder.path``), its latent mean
  times the folder's ``scaling_factor`` (diffusers is an optional extra: ``pip install -e ".[vae]"``).

A model file records its space (``space_record``), so a stream needs nothing but the model file
(``load_space``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import nn


@dataclass
class AutoencoderConfig:
    """The world autoencoder: ``widths`` are the channels of its stages, each halving h and w (the first
    by a pixel unshuffle, the others by a stride-2 convolution), so the factor is 2 ** len(widths);
    ``latent_channels`` per latent cell."""

    resolution: int = 64
    latent_channels: int = 8
    widths: tuple[int, ...] = (32, 64, 128)

    def __post_init__(self) -> None:
        self.widths = tuple(self.widths)
        if not self.widths or any(not isinstance(w, int) or w < 8 or w % 8 for w in self.widths):
            raise ValueError(
                f"autoencoder widths must be positive multiples of 8 (GroupNorm of 8 groups), one per stage, "
                f"got {self.widths}"
            )
        if not isinstance(self.latent_channels, int) or self.latent_channels < 1:
            raise ValueError(
                f"autoencoder latent_channels must be a positive int, got {self.latent_channels}"
            )
        if self.resolution % self.factor:
            raise ValueError(
                f"resolution={self.resolution} is not divisible by the autoencoder's factor {self.factor} "
                f"(2 ** {len(self.widths)} stages)"
            )

    @property
    def factor(self) -> int:
        """Spatial compression: pixels per latent cell along h and w."""
        return 2 ** len(self.widths)


def _frames(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame 2D network ``fn`` to videos ``[b, f, c, h, w]``."""
    out = fn(rearrange(x, "b f c h w -> (b f) c h w"))
    return rearrange(out, "(b f) c h w -> b f c h w", b=x.shape[0])


class PixelSpace(nn.Module):
    """The identity space: the DiT denoises RGB frames directly."""

    kind = "pixel"

    def __init__(self, channels: int = 3):
        super().__init__()
        self.latent_channels, self.image_channels, self.factor = channels, channels, 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The frames themselves."""
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The frames themselves."""
        return z


class ResBlock(nn.Module):
    """Two 3x3 convolutions, each after GroupNorm and SiLU, added to the input (a 1x1 projection when the
    width changes), at one resolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
            nn.GroupNorm(8, cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1),
        )  # fmt: skip
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class WorldAutoencoder(nn.Module):
    """Per-frame convolutional autoencoder: frames [b, f, 3, H, W] <-> normalised latents
    [b, f, latent_channels, H / factor, W / factor].

    The full-resolution stage is a pixel (un)shuffle: the encoder folds each 2x2 pixel square into
    channels and the decoder's last convolution predicts all four pixels of its square, so no
    convolution runs at full resolution (the world's frames are flat colours with sharp edges, which
    sub-pixel outputs draw exactly)."""

    kind = "world"

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.latent_channels, self.image_channels, self.factor = cfg.latent_channels, 3, cfg.factor
        w = cfg.widths
        # Encoder: H -> H/2 by pixel unshuffle, then a block per stage with a stride-2 convolution between.
        down: list[nn.Module] = [
            nn.PixelUnshuffle(2),
            nn.Conv2d(12, w[0], 3, padding=1),
            ResBlock(w[0], w[0]),
        ]
        for w_in, w_out in zip(w[:-1], w[1:], strict=True):
            down += [nn.Conv2d(w_in, w_out, 3, stride=2, padding=1), ResBlock(w_out, w_out)]
        self.encoder = nn.Sequential(
            *down, nn.GroupNorm(8, w[-1]), nn.SiLU(), nn.Conv2d(w[-1], cfg.latent_channels, 1)
        )
        # Decoder: the mirror, nearest-neighbour upsampling then a block per stage, then pixel shuffle.
        up: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, w[-1], 3, padding=1), ResBlock(w[-1], w[-1])]
        for w_in, w_out in zip(w[::-1][:-1], w[::-1][1:], strict=True):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), ResBlock(w_in, w_out)]
        head = [nn.GroupNorm(8, w[0]), nn.SiLU(), nn.Conv2d(w[0], 12, 3, padding=1), nn.PixelShuffle(2)]
        self.decoder = nn.Sequential(*up, *head)
        # Per-channel statistics of the training split's raw latents (set by ``fit_normalisation``).
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    def raw_encode(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised latents of frames [n, 3, H, W] -> [n, latent_channels, h, w]."""
        return self.encoder(x)

    def raw_decode(self, z: torch.Tensor) -> torch.Tensor:
        """Frames [n, 3, H, W] of unnormalised latents."""
        return self.decoder(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Videos [b, f, 3, H, W] in [-1, 1] -> latents [b, f, C, h, w], zero mean and unit variance."""
        z = _frames(self.raw_encode, x.to(self.latent_std.dtype))
        return (z - self.latent_mean.view(-1, 1, 1)) / self.latent_std.view(-1, 1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [b, f, C, h, w] -> videos [b, f, 3, H, W], clamped to [-1, 1]."""
        raw = z.to(self.latent_std.dtype) * self.latent_std.view(-1, 1, 1) + self.latent_mean.view(-1, 1, 1)
        return _frames(self.raw_decode, raw).clamp(-1, 1)

    @torch.no_grad()
    def fit_normalisation(self, raw: torch.Tensor) -> None:
        """Set the per-channel mean and std from raw latents [n, C, h, w] of the training split."""
        self.latent_mean.copy_(raw.mean(dim=(0, 2, 3)))
        self.latent_std.copy_(raw.std(dim=(0, 2, 3)).clamp_min(1e-6))


class PretrainedVAE(nn.Module):
    """A local diffusers ``AutoencoderKL`` folder as a space: latent mean times ``scaling_factor``."""

    kind = "pretrained"

    def __init__(self, path: str | Path):
        super().__init__()
        try:
            from diffusers import AutoencoderKL
        except ImportError as err:
            raise ImportError(
                'a pretrained VAE needs diffusers: pip install -e ".[vae]" (or pip install diffusers)'
            ) from err
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a diffusers AutoencoderKL folder (no config.json)")
        self.path = str(path)
        self.vae = AutoencoderKL.from_pretrained(path, low_cpu_mem_usage=False).eval().requires_grad_(False)
        config = self.vae.config
        self.latent_channels, self.image_channels = config.latent_channels, config.in_channels
        self.factor = 2 ** (len(config.block_out_channels) - 1)
        # diffusers' latent normalisation: (z - shift_factor) * scaling_factor (shift 0 for SD-style VAEs).
        self.scaling = float(config.scaling_factor)
        self.shift = float(config.get("shift_factor") or 0.0)  # a key of newer VAE configs only
        self.dtype = next(self.vae.parameters()).dtype

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Videos [b, f, 3, H, W] in [-1, 1] -> normalised latent means [b, f, C, H / factor, W / factor]."""
        code = lambda v: (self.vae.encode(v.to(self.dtype)).latent_dist.mean - self.shift) * self.scaling  # noqa: E731
        return _frames(code, x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents [b, f, C, h, w] -> videos [b, f, 3, H, W], clamped to [-1, 1]."""
        return _frames(
            lambda v: self.vae.decode((v.to(self.dtype) / self.scaling) + self.shift).sample, z
        ).clamp(-1, 1)


Space = PixelSpace | WorldAutoencoder | PretrainedVAE


def space_record(space: Space) -> dict:
    """What a model file stores of its space: the kind, and the world autoencoder's config and weights
    (its statistics included) or the pretrained VAE's folder."""
    if isinstance(space, WorldAutoencoder):
        state = {k: v.detach().cpu() for k, v in space.state_dict().items()}
        return {"kind": space.kind, "config": asdict(space.cfg), "state": state}
    if isinstance(space, PretrainedVAE):
        return {"kind": space.kind, "path": space.path}
    return {"kind": space.kind, "channels": space.latent_channels}


def space_from_record(record: dict) -> Space:
    """The space ``space_record`` stored, in eval mode on the CPU."""
    kind = record.get("kind")
    if kind == "world":
        space = WorldAutoencoder(AutoencoderConfig(**record["config"]))
        space.load_state_dict(record["state"])
    elif kind == "pretrained":
        space = PretrainedVAE(record["path"])
    elif kind == "pixel":
        space = PixelSpace(record["channels"])
    else:
        raise ValueError(f"unknown space kind {kind!r}; a model file's space is world, pretrained or pixel")
    return space.eval().requires_grad_(False)


def read_autoencoder(path: str | Path) -> WorldAutoencoder | PretrainedVAE:
    """The autoencoder the ``autoencoder`` stage wrote to ``path`` (a ``.pt`` file of ``space_record``),
    or the pretrained VAE in the folder ``path``."""
    path = Path(path)
    if path.is_dir():
        return PretrainedVAE(path)
    if not path.is_file():
        raise FileNotFoundError(f"no autoencoder at {path}; train it first (dvc repro autoencoder)")
    record = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(record, dict) or record.get("kind") not in ("world", "pretrained"):
        raise ValueError(f"{path} is not an autoencoder file (expected a space record)")
    return space_from_record(record)
