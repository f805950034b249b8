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
import time
from pathlib import Path

import torch
from torch import nn

from streamdit.acceleration import autocast, compile_model, machine_info
from streamdit.config import Config, LoopConfig, load_config, parse_overrides, resolve_device
from streamdit.data import WorldClips, write_atomic
from streamdit.distributed import finish_distributed, init_distributed
from streamdit.flow import flow_matching_loss, interpolate, velocity_target
from streamdit.model import ModelConfig, StreamDiT, build_model, count_parameters
from streamdit.progress import progress_bar, rate, show
from streamdit.sampling import null_embedding
from streamdit.schedule import independent_levels, sample_training_levels
from streamdit.text import TextEmbedding, load_text_encoder

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
    write_atomic(path, lambda f: torch.save(obj, f))


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


def optimiser_step(
    loss: torch.Tensor,
    model: nn.Module,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    loop: LoopConfig,
    step: int,
    ckpt_path: Path,
    ema_decay: float,
) -> tuple[float, float]:
    """One update: learning rate for ``step``, backward, clipping, NaN guard, AdamW, EMA.

    Returns (lr, gradient norm before clipping). Shared by training and distillation.
    """
    lr = lr_at(step, loop.lr, loop.warmup_steps, loop.steps)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip))
    check_finite(loss.detach().item(), grad_norm, step, ckpt_path, loop.checkpoint_every, loop.section)
    opt.step()
    update_ema(ema, model, ema_decay)
    return lr, grad_norm


def log_step(live, bar, history: list[float], step: int, lr: float, grad_norm: float, loop: LoopConfig):
    """Progress bar every step (loss, lr, samples/s; it redraws at its own pace); mean loss, lr and
    gradient norm to dvclive every ``log_every`` steps."""
    bar.update(1)
    steps_per_second = rate(bar)
    samples = "-" if steps_per_second is None else f"{steps_per_second * loop.batch_size:.1f}"
    show(bar, loss=f"{history[-1]:.4f}", lr=f"{lr:.1e}", samples_per_s=samples)
    if step % loop.log_every == 0 or step == loop.steps:
        window = history[-loop.log_every :]
        live.log_metric(f"{loop.section}/loss", sum(window) / len(window))
        live.log_metric(f"{loop.section}/lr", lr)
        live.log_metric(f"{loop.section}/grad_norm", grad_norm)
        live.next_step()


def short_hash(obj: object) -> str:
    """12 hex digits identifying a JSON-serialisable object (keys sorted): names a run's folder."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def run_key(cfg: Config) -> str:
    """A short hash of everything that determines the trained weights (not sampling or the profile name)."""
    d = cfg.to_dict()
    # level_mode joins the key only when it is not the default, so the runs (and checkpoints) of
    # mixed training keep the key they had before the switch existed.
    if d["train"]["level_mode"] == "schemes":
        d["train"] = {k: v for k, v in d["train"].items() if k != "level_mode"}
    return short_hash({k: d[k] for k in ("seed", "data_dir", "data", "text", "model", "train")})


def train(
    cfg: Config,
    out_path: str | Path,
    *,
    work_root: str | Path = "runs/train",
    cache_dir: str | Path = "cache",
    progress: bool = True,
    stop_after: int | None = None,
) -> dict | None:
    """Train (or resume) the model of ``cfg``; write its EMA weights to ``out_path``.

    ``stop_after`` ends this call after that many steps, as a kill would (the last
    checkpoint stays, nothing final is written, None is returned): for tests of resume
    and for time-boxed sessions.

    Checkpoints and the dvclive log live in ``work_root/<run_key>/``, outside the pipeline's
    outputs, so a killed run resumes where it stopped and runs of different configs never mix;
    the caption embeddings are cached under ``cache_dir/text/``.
    Returns the run's summary metrics (also in ``work_root/<run_key>/summary.json``).
    """
    from dvclive import Live

    out_dir = Path(work_root) / run_key(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    ranks, device = init_distributed(resolve_device(tc.device))
    schemes = tc.parsed_schemes

    dataset = WorldClips(Path(cfg.data_dir), "train", window=cfg.model.frames, generator_seed=cfg.seed + 1)
    batches = Batches(dataset, tc.batch_size, seed=cfg.seed + 2)
    encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    encoder.warm(dataset.captions, cache_file=Path(cache_dir) / "text" / f"{encoder.cache_key}.pt")
    if encoder.dim != cfg.model.text_dim:
        raise ValueError(f"model.text_dim={cfg.model.text_dim} but the text encoder gives {encoder.dim}")

    torch.manual_seed(cfg.seed)  # parameter initialisation only; every other draw has its own generator
    model = build_model(cfg.model).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    # The network the loss calls: compiled and/or wrapped for data parallelism; ``model`` keeps the weights.
    net = compile_model(model, tc.compile)
    if ranks.world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device] if device != "cpu" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    noise_gen = torch.Generator().manual_seed(cfg.seed + 3)  # levels, schemes, noise, caption dropout

    step, history, elapsed = 0, [], 0.0
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.is_file():
        state = read_checkpoint(ckpt_path, run_key(cfg))
        step, history, elapsed = restore_training_state(state, model, ema, opt, batches, noise_gen)

    # dvcyaml=None: dvclive must not add this run's (work-dir) files to the pipeline's dvc.yaml.
    live = (
        Live(str(out_dir / "dvclive"), resume=step > 0, save_dvc_exp=False, dvcyaml=None)
        if ranks.is_main
        else None
    )
    bar = progress_bar(tc.steps, "train", progress and ranks.is_main, initial=step)
    model.train()
    last_step = tc.steps if stop_after is None else min(tc.steps, step + stop_after)
    while step < last_step:
        t0 = time.perf_counter()
        # Every rank draws the same global batch and noise, then trains on its own rows (distributed.py).
        x0, captions = next(batches)
        b = x0.shape[0]
        text = encoder(captions)
        # Caption dropout trains the null caption used by classifier-free guidance.
        keep = torch.rand(b, generator=noise_gen) >= tc.caption_dropout
        text = text.where(keep, null_embedding(model, b).to("cpu"))
        if tc.level_mode == "independent":  # Diffusion Forcing: every frame at its own random level
            levels, mask = independent_levels(b, cfg.model.frames, noise_gen, shift=tc.time_shift)
        else:
            levels, mask, _ = sample_training_levels(
                schemes, tc.scheme_probs, b, noise_gen, warmup_prob=tc.startup_prob, shift=tc.time_shift
            )
        noise = torch.randn(x0.shape, generator=noise_gen)
        rows = ranks.rows(b)
        x0, noise, levels, mask = (
            t[rows].to(device) for t in (x0, noise, levels, mask)
        )  # x0: [b, B, c, h, w]
        text = TextEmbedding(text.tokens[rows], text.mask[rows], text.pooled[rows]).to(device)
        x_t = interpolate(x0, noise, levels)  # each frame at its own level
        with autocast(device, tc.precision):
            v = net(x_t, levels, text.tokens, text.mask, text.pooled)
        loss = flow_matching_loss(v, velocity_target(x0, noise), mask)
        lr, grad_norm = optimiser_step(
            loss, model, ema, opt, tc, step, ckpt_path, ema_decay_at(step, tc.ema_decay)
        )
        step += 1
        elapsed += time.perf_counter() - t0
        history.append(ranks.mean(loss))  # the global batch's loss on every rank
        if not ranks.is_main:
            continue
        log_step(live, bar, history, step, lr, grad_norm, tc)
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            state = training_state(
                model, ema, opt, batches, noise_gen, step, history, elapsed, cfg.to_dict(), run_key(cfg)
            )
            atomic_save(state, ckpt_path)
    bar.close()
    finish_distributed()
    if not ranks.is_main:
        return None
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
        "processes": ranks.world,
        "machine": machine_info(device),
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


def main(argv: list[str] | None = None) -> None:
    """CLI: train the model of a params.yaml profile, in one process or under ``torchrun``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m streamdit.train", description=main.__doc__)
    parser.add_argument("--params", default="params.yaml", help="the parameter file (default params.yaml)")
    parser.add_argument("--profile", help="profile of --params (default: its `profile` key)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. train.steps=100")
    parser.add_argument("--out", default="models/streamdit.pt", help="where the EMA weights go")
    parser.add_argument("--work-root", default="runs/train", help="checkpoints and logs (resumable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = load_config(args.params, args.profile, parse_overrides(args.set))
    summary = train(cfg, args.out, work_root=args.work_root, progress=not args.no_progress)
    if summary is not None:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
