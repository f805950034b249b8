"""Buffered flow-matching training with mixed partition schemes (DESIGN.md section 1).

One plain loop, nanoGPT style: draw clips and captions, draw a scheme and offset per
sample, noise every frame to its own level, regress the velocity of the non-reference
frames. AdamW, warm-up + cosine learning rate, gradient clipping and an EMA copy of the
weights (``optim.py``); checkpoints, exact resume, dvclive and progress (``runs.Run``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from streamdit.acceleration import autocast, compile_model, machine_info, resolve_device
from streamdit.autoencoder import PixelSpace, read_autoencoder, space_record
from streamdit.checkpoint import save_model
from streamdit.config import Config, load_config
from streamdit.data import Batches, autoencoder_record, file_digest, training_clips
from streamdit.distributed import finish_distributed, init_distributed
from streamdit.flow import flow_matching_loss, interpolate, velocity_target
from streamdit.model import SWITCHES, build_model, count_parameters
from streamdit.optim import ema_decay_at, optimiser_step
from streamdit.params import parse_overrides
from streamdit.runs import Run, config_hash, read_history
from streamdit.schedule import independent_levels, sample_training_levels
from streamdit.text import load_text_encoder, null_embedding


def run_key(cfg: Config, autoencoder_path: str | Path = "models/autoencoder.pt") -> str:
    """A short hash of everything that determines the trained weights (not sampling or the profile name);
    a latent model's includes the bytes of its autoencoder file, which determine its latents."""
    d = cfg.to_dict()
    relevant = {k: d[k] for k in ("seed", "data_dir", "data", "text", "model", "train")}
    if cfg.latent:
        relevant["autoencoder"] = file_digest(autoencoder_path)
    # A fine-tune: the bytes of the model it starts from, not where that file lies.
    relevant["train"] = {k: v for k, v in relevant["train"].items() if k != "finetune_from"}
    if cfg.train.finetune_from is not None:
        relevant["base"] = file_digest(cfg.train.finetune_from, stage="base")
    return config_hash(relevant)


def start_from(model: nn.Module, ema: nn.Module, path: str | Path, cfg: Config, space: nn.Module) -> None:
    """A fine-tune's start: the EMA weights of the model file ``path`` into ``model`` and ``ema``. The
    file's architecture and space must be this run's (a base trained on another autoencoder's latents
    would be a different model); the switches of how the same weights attend and see time
    (``model.SWITCHES``: full attention, one time embedding, chunk-causal attention) may differ."""
    state = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "ema" not in state or "model_config" not in state:
        raise ValueError(f"train.finetune_from: {path} is not a StreamDiT model file")
    differ = sorted(
        k
        for k, v in cfg.to_dict()["model"].items()
        if state["model_config"].get(k) != v and k not in SWITCHES
    )
    if differ:
        raise ValueError(
            f"train.finetune_from: {path} is another architecture (model settings {differ} differ)"
        )
    if not same_space(state.get("space"), space_record(space)):
        raise ValueError(f"train.finetune_from: {path} denoises in another space than this run's autoencoder")
    model.load_state_dict(state["ema"])
    ema.load_state_dict(state["ema"])


def same_space(a: dict | None, b: dict) -> bool:
    """Whether two space records (``autoencoder.space_record``) are the same space, weights included."""
    if a is None or a.get("kind") != b.get("kind") or a.get("config") != b.get("config"):
        return False
    if a.get("path") != b.get("path") or a.get("channels") != b.get("channels"):
        return False
    sa, sb = a.get("state") or {}, b.get("state") or {}
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def model_space(cfg: Config, autoencoder_path: str | Path) -> nn.Module:
    """The space the model of ``cfg`` denoises in: the autoencoder stage's file for a latent model,
    pixels otherwise."""
    if cfg.latent:
        return read_autoencoder(autoencoder_path)
    return PixelSpace(cfg.model.channels)


def train(
    cfg: Config,
    out_path: str | Path,
    *,
    autoencoder_path: str | Path = "models/autoencoder.pt",
    latents_dir: str | Path = "latents",
    work_root: str | Path = "runs/train",
    cache_dir: str | Path = "cache",
    progress: bool = True,
    stop_after: int | None = None,
) -> dict | None:
    """Train (or resume) the model of ``cfg``; write its EMA weights to ``out_path``.

    A latent model (``model.space``) trains on the train split's latents cached in ``latents_dir`` by the
    autoencoder stage, and its model file records the autoencoder of ``autoencoder_path``.

    ``stop_after`` ends this call after that many steps, as a kill would (the last
    checkpoint stays, nothing final is written, None is returned): for tests of resume
    and for time-boxed runs.

    Checkpoints and the dvclive log live in ``work_root/<run_key>/`` (``runs.Run``), outside the
    pipeline's outputs; the caption embeddings are cached under ``cache_dir/text/``.
    Returns the run's summary metrics (also in ``work_root/<run_key>/summary.json``).
    """
    tc = cfg.train
    ranks, device = init_distributed(resolve_device(tc.device))
    space = model_space(cfg, autoencoder_path)
    dataset = training_clips(cfg, latents_dir, cfg.model, generator_seed=cfg.seed + 1)
    if cfg.latent and autoencoder_record(latents_dir) != file_digest(autoencoder_path):
        raise ValueError(
            f"the latents in {latents_dir} were encoded by another autoencoder than {autoencoder_path}; "
            "rerun the autoencoder stage (dvc repro autoencoder)"
        )
    batches = Batches(dataset, tc.batch_size, seed=cfg.seed + 2)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    encoder.warm(dataset.captions, cache_file=Path(cache_dir) / "text" / f"{encoder.cache_key}.pt")
    if encoder.dim != cfg.model.text_dim:
        raise ValueError(f"model.text_dim={cfg.model.text_dim} but the text encoder gives {encoder.dim}")

    torch.manual_seed(cfg.seed)  # parameter initialisation only; every other draw has its own generator
    model = build_model(cfg.model).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    if tc.finetune_from is not None:
        start_from(model, ema, tc.finetune_from, cfg, space)
    # The network the loss calls: compiled and/or wrapped for data parallelism; ``model`` keeps the weights.
    net = compile_model(model, tc.compile)
    if ranks.world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device] if device != "cpu" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    noise_gen = torch.Generator().manual_seed(cfg.seed + 3)  # levels, schemes, noise, caption dropout
    run = Run(
        work_root,
        run_key(cfg, autoencoder_path),
        steps=tc.steps,
        desc="train",
        section=tc.section,
        batch_size=tc.batch_size,
        progress=progress,
        log_every=tc.log_every,
        checkpoint_every=tc.checkpoint_every,
        is_main=ranks.is_main,
        meta={"model_config": cfg.to_dict()["model"], "config": cfg.to_dict()},
    )
    run.resume(model=model, ema=ema, opt=opt, batches=batches, noise_gen=noise_gen)

    model.train()
    for step in run.steps(stop_after):
        # Every rank draws the same global batch and noise, then trains on its own rows (distributed.py).
        x0, captions = next(batches)  # x0: [b, B, c, h, w] (latents or pixels)
        b = x0.shape[0]
        text = encoder(captions)
        # Caption dropout trains the null caption used by classifier-free guidance.
        keep = torch.rand(b, generator=noise_gen) >= tc.caption_dropout
        text = text.where(keep, null_embedding(model, b).to("cpu"))
        if tc.level_mode == "independent":  # Diffusion Forcing: every frame at its own random level
            levels, mask = independent_levels(b, cfg.model.frames, noise_gen, shift=tc.time_shift)
        else:
            levels, mask, _ = sample_training_levels(
                tc.parsed_schemes,
                tc.scheme_probs,
                b,
                noise_gen,
                startup_prob=tc.startup_prob,
                shift=tc.time_shift,
                segments=tc.level_mode == "segments",
            )
        noise = torch.randn(x0.shape, generator=noise_gen)
        rows = ranks.rows(b)
        x0, noise, levels, mask = (t[rows].to(device) for t in (x0, noise, levels, mask))
        text = text[rows].to(device)
        x_t = interpolate(x0, noise, levels)  # each frame at its own level
        with autocast(device, tc.precision):
            v = net(x_t, levels, text.tokens, text.mask, text.pooled)
        loss = flow_matching_loss(v, velocity_target(x0, noise), mask)
        lr, grad_norm = optimiser_step(
            loss, model, ema, opt, tc, step, run.checkpoint, ema_decay_at(step, tc.ema_decay)
        )
        run.record(ranks.mean(loss), lr, grad_norm)  # the global batch's loss on every rank
    finish_distributed()
    if not ranks.is_main or not run.finished:
        return None

    save_model(out_path, ema, cfg.to_dict(), space)
    loss_first, loss_last = run.loss_ends()
    return run.finish(
        {
            "steps": run.step,
            "parameters": count_parameters(model),
            "loss_first": loss_first,
            "loss_last": loss_last,
            "train_seconds": round(run.elapsed, 1),
            "samples_per_second": round(run.step * tc.batch_size / max(run.elapsed, 1e-9), 2),
            "device": device,
            "processes": ranks.world,
            "machine": machine_info(device),
            "finetuned_from": None
            if tc.finetune_from is None
            else {"path": tc.finetune_from, "sha1": file_digest(tc.finetune_from, stage="base")},
        }
    )


def loss_history(
    cfg: Config, work_root: str | Path = "runs/train", autoencoder_path: str | Path = "models/autoencoder.pt"
) -> list[float]:
    """The per-step training loss of ``cfg``'s run (written when training finishes)."""
    return read_history(work_root, run_key(cfg, autoencoder_path))


def main(argv: list[str] | None = None) -> None:
    """CLI: train the model of a params.yaml profile, in one process or under ``torchrun``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m streamdit.train", description=main.__doc__)
    parser.add_argument("--params", default="params.yaml", help="the parameter file (default params.yaml)")
    parser.add_argument("--profile", help="profile of --params (default: its `profile` key)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. train.steps=100")
    parser.add_argument("--out", default="models/streamdit.pt", help="where the EMA weights go")
    parser.add_argument("--autoencoder", default="models/autoencoder.pt", help="a latent model's space")
    parser.add_argument("--latents", default="latents", help="the cached latents of the train split")
    parser.add_argument("--work-root", default="runs/train", help="checkpoints and logs (resumable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = load_config(args.params, args.profile, parse_overrides(args.set))
    summary = train(
        cfg,
        args.out,
        autoencoder_path=args.autoencoder,
        latents_dir=args.latents,
        work_root=args.work_root,
        progress=not args.no_progress,
    )
    if summary is not None:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
