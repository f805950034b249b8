"""Buffered flow-matching training with mixed partition schemes (DESIGN.md section 1).

One plain loop, nanoGPT style: draw clips and captions, draw a scheme and offset per
sample, noise every frame to its own level, regress the velocity of the non-reference
frames. AdamW, warm-up + cosine learning rate, gradient clipping, an EMA copy of the
weights, atomic checkpoints every ``checkpoint_every`` steps and exact resume.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from streamdit.config import Config, resolve_device
from streamdit.data import WorldClips
from streamdit.flow import flow_matching_loss, interpolate, velocity_target
from streamdit.model import ModelConfig, StreamDiT, build_model, count_parameters
from streamdit.sampling import null_embedding
from streamdit.schedule import sample_training_levels
from streamdit.text import load_text_encoder

CHECKPOINT = "checkpoint.pt"


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``base_lr``, then cosine decay to 10% of it at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with a warm-up, min(decay, (1 + step) / (10 + step)): the average starts short
    and lengthens, so early weights of a short run do not linger in it."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1 - decay)


def atomic_save(obj: object, path: Path) -> None:
    """torch.save through a temporary file and a rename, so a crash never leaves a torn file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path, expected_key: str) -> dict:
    """A training checkpoint, with clear errors for a torn/corrupt file or one of another run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for torn or foreign files
        raise ValueError(
            f"checkpoint {path} is unreadable ({err}); delete it to start this run over"
        ) from err
    missing = {"model", "ema", "opt", "batches", "noise_gen", "step", "history", "run_key"} - set(state)
    if missing:
        raise ValueError(f"checkpoint {path} lacks {sorted(missing)}; it was not written by this trainer")
    if state["run_key"] != expected_key:
        raise ValueError(
            f"checkpoint {path} belongs to run {state['run_key']}, not {expected_key}; it was moved or "
            "edited by hand: delete it to start over"
        )
    return state


def save_model(path: str | Path, ema: nn.Module, config: dict) -> None:
    """Write EMA weights in the format ``load_model`` reads (the architecture is ``config["model"]``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"ema": ema.state_dict(), "model_config": config["model"], "config": config}, path)


def load_model(path: str | Path, device: str = "cpu") -> tuple[StreamDiT, dict]:
    """The EMA model written by ``train`` and the run's config dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trained model at {path}; run the train stage first (dvc repro train)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "model_config" not in state or "ema" not in state:
        raise ValueError(f"{path} is not a StreamDiT model file (keys: {sorted(state)})")
    model = build_model(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["ema"])
    return model.to(device).eval(), state["config"]


class Batches:
    """Random training batches with every random draw on an explicit generator (so resume is exact)."""

    def __init__(self, dataset: WorldClips, batch_size: int, seed: int):
        self.dataset = dataset
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __next__(self) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(len(self.dataset), (self.batch_size,), generator=self.generator)
        items = [self.dataset[int(i)] for i in idx]
        return torch.stack([it["frames"] for it in items]), [it["caption"] for it in items]

    def state_dict(self) -> dict:
        return {"batches": self.generator.get_state(), "windows": self.dataset.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["batches"])
        self.dataset.generator.set_state(state["windows"])


def training_state(
    model: nn.Module,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    batches: Batches,
    noise_gen: torch.Generator,
    step: int,
    history: list[float],
    elapsed: float,
    config: dict,
    key: str,
) -> dict:
    """Everything an exact resume needs, in the format ``read_checkpoint`` checks.

    The model's architecture is taken from ``config["model"]``."""
    return {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "batches": batches.state_dict(),
        "noise_gen": noise_gen.get_state(),
        "step": step,
        "history": history,
        "elapsed": elapsed,
        "model_config": config["model"],
        "config": config,
        "run_key": key,
    }


def restore_training_state(
    state: dict,
    model: nn.Module,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    batches: Batches,
    noise_gen: torch.Generator,
) -> tuple[int, list[float], float]:
    """Load a ``training_state`` into the live objects; returns (step, loss history, elapsed seconds)."""
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    batches.load_state_dict(state["batches"])
    noise_gen.set_state(state["noise_gen"])
    return state["step"], state["history"], state["elapsed"]


def check_finite(
    loss: float, grad_norm: float, step: int, ckpt_path: Path, checkpoint_every: int, section: str
) -> None:
    """Raise before the optimiser step on a NaN/inf loss or gradient: neither weights nor checkpoint see it.

    ``step`` counts finished steps; ``section`` names the params.yaml section whose lr to lower.
    """
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    raise FloatingPointError(
        f"non-finite training loss or gradient (loss {loss}, grad norm {grad_norm}) at step "
        f"{step + 1}; stopping. The last good checkpoint is kept at {ckpt_path} (step "
        f"{step - step % checkpoint_every}); lower {section}.lr or check the data before resuming"
    )


def short_hash(obj: object) -> str:
    """12 hex digits identifying a JSON-serialisable object (keys sorted): names a run's folder."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def run_key(cfg: Config) -> str:
    """A short hash of everything that determines the trained weights (not sampling or the profile name)."""
    d = cfg.to_dict()
    return short_hash({k: d[k] for k in ("seed", "data_dir", "data", "text", "model", "train")})


def train(
    cfg: Config,
    out_path: str | Path,
    *,
    work_root: str | Path = "runs/train",
    progress: bool = True,
    stop_after: int | None = None,
) -> dict | None:
    """Train (or resume) the model of ``cfg``; write its EMA weights to ``out_path``.

    ``stop_after`` ends this call after that many steps, as a kill would (the last
    checkpoint stays, nothing final is written, None is returned): for tests of resume
    and for time-boxed sessions.

    Checkpoints and the dvclive log live in ``work_root/<run_key>/``, outside the pipeline's
    outputs, so a killed run resumes where it stopped and runs of different configs never mix.
    Returns the run's summary metrics (also in ``work_root/<run_key>/summary.json``).
    """
    from dvclive import Live

    out_dir = Path(work_root) / run_key(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    device = resolve_device(tc.device)
    schemes = tc.parsed_schemes

    dataset = WorldClips(Path(cfg.data_dir), "train", window=cfg.model.frames, generator_seed=cfg.seed + 1)
    batches = Batches(dataset, tc.batch_size, seed=cfg.seed + 2)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    encoder.warm(dataset.captions, cache_file=Path("cache") / "text" / f"{encoder.cache_key}.pt")
    if encoder.dim != cfg.model.text_dim:
        raise ValueError(f"model.text_dim={cfg.model.text_dim} but the text encoder gives {encoder.dim}")

    torch.manual_seed(cfg.seed)  # parameter initialisation only; every other draw has its own generator
    model = build_model(cfg.model).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    noise_gen = torch.Generator().manual_seed(cfg.seed + 3)  # levels, schemes, noise, caption dropout

    step, history, elapsed = 0, [], 0.0
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.is_file():
        state = read_checkpoint(ckpt_path, run_key(cfg))
        step, history, elapsed = restore_training_state(state, model, ema, opt, batches, noise_gen)

    # dvcyaml=None: dvclive must not add this run's (work-dir) files to the pipeline's dvc.yaml.
    live = Live(str(out_dir / "dvclive"), resume=step > 0, save_dvc_exp=False, dvcyaml=None)
    bar = tqdm(total=tc.steps, initial=step, desc="train", disable=not progress, dynamic_ncols=True)
    model.train()
    last_step = tc.steps if stop_after is None else min(tc.steps, step + stop_after)
    while step < last_step:
        t0 = time.perf_counter()
        x0, captions = next(batches)
        x0 = x0.to(device)  # [b, B, c, h, w]
        b = x0.shape[0]
        text = encoder(captions).to(device)
        # Caption dropout trains the null caption used by classifier-free guidance.
        keep = torch.rand(b, generator=noise_gen) >= tc.caption_dropout
        text = text.where(keep, null_embedding(model, b))
        levels, mask, which = sample_training_levels(
            schemes, tc.scheme_probs, b, noise_gen, warmup_prob=tc.startup_prob, shift=tc.time_shift
        )
        levels, mask = levels.to(device), mask.to(device)
        noise = torch.randn(x0.shape, generator=noise_gen).to(device)
        x_t = interpolate(x0, noise, levels)  # each frame at its own level
        v = model(x_t, levels, text.tokens, text.mask, text.pooled)
        loss = flow_matching_loss(v, velocity_target(x0, noise), mask)

        lr = lr_at(step, tc.lr, tc.warmup_steps, tc.steps)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip))
        check_finite(loss.detach().item(), grad_norm, step, ckpt_path, tc.checkpoint_every, "train")
        opt.step()
        update_ema(ema, model, ema_decay_at(step, tc.ema_decay))
        step += 1
        elapsed += time.perf_counter() - t0

        loss_value = loss.detach().item()
        history.append(loss_value)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.1e}")
        if step % tc.log_every == 0 or step == tc.steps:
            window = history[-tc.log_every :]
            live.log_metric("train/loss", sum(window) / len(window))
            live.log_metric("train/lr", lr)
            live.log_metric("train/grad_norm", grad_norm)
            live.next_step()
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            state = training_state(
                model, ema, opt, batches, noise_gen, step, history, elapsed, cfg.to_dict(), run_key(cfg)
            )
            atomic_save(state, ckpt_path)
    bar.close()
    if step < tc.steps:
        live.end()
        return None

    save_model(out_path, ema, cfg.to_dict())
    k = max(1, min(50, len(history) // 10))
    summary = {
        "steps": step,
        "parameters": count_parameters(model),
        "loss_first": sum(history[:k]) / k,
        "loss_last": sum(history[-k:]) / k,
        "train_seconds": round(elapsed, 1),
        "samples_per_second": round(step * tc.batch_size / max(elapsed, 1e-9), 2),
        "device": device,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "loss.json").write_text(json.dumps(history) + "\n")
    live.end()
    return summary


def loss_history(cfg: Config, work_root: str | Path = "runs/train") -> list[float]:
    """The per-step training loss of ``cfg``'s run (written when training finishes)."""
    path = Path(work_root) / run_key(cfg) / "loss.json"
    if not path.is_file():
        raise FileNotFoundError(f"no finished training run for this config at {path.parent}")
    return json.loads(path.read_text())
