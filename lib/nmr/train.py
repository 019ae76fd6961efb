"""Two-stage training of the denoiser (docs/nmr.md, recipe steps 6 and 9).

Stage A: reconstruction + derivative + baseline curvature against the pseudo truth, with a
light consistency term. Stage B: stronger consistency and residual-ratio (T) terms with an
SNR curriculum (high-SNR acquisitions first, then lower ones). AdamW, cosine decay with
linear warm-up, AMP (bfloat16) on CUDA, atomic per-epoch checkpoints and exact resume.

Inputs and targets: each reconstruction input is one acquisition k (by default 1 or 2) and
its target the pseudo truth fused without k, so their noises are independent. Inputs are
lifted by added white noise to the measured noise level of a noisier acquisition j < k: the
network sees the SNRs of acquisition 0 while its target stays registered to its input (the
noisy acquisition 0 itself can only be aligned to the others as well as its noise allows,
and on lines a few points wide that error teaches blurring). Losses are measured in units of
each input's noise std, so that every SNR counts alike.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.device import pick_device
from ..core.schedule import warmup_decay
from ..core.seeding import epoch_rng, epoch_seed, seed_weights
from ..core.state import (
    check_epoch,
    check_finite,
    check_state_keys,
    load_state,
    save_state,
    settings_diff,
)
from .losses import (
    LossWeights,
    consistency_loss,
    curvature_loss,
    derivative_loss,
    reconstruction_loss,
    residual_ratio_loss,
    top_bias_loss,
)
from .preprocess import Prepared, PrepConfig, check_T, prepare_many, pseudo_truth
from .unet import UNet1D, UNetConfig, noise_std


@dataclass(frozen=True)
class DenoiserTrainConfig:
    """Schedule and optimizer settings (frozen: derive a changed copy with `dataclasses.replace`)."""

    epochs_a: int = 40
    epochs_b: int = 60
    batch: int = 8
    crop: int = 2048  # training window (points, divisible by 16); 0 = whole spectra
    steps_per_epoch: int = 0  # 0 = one pass over the samples
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    n_cons: int = 2  # acquisitions in each consistency set
    noise_units: bool = (
        True  # measure the losses in units of each input's noise std (else of its max)
    )
    input_acqs: tuple[int, ...] = (1, 2)  # acquisitions that serve as reconstruction inputs
    renoise: float = 1.0  # share of inputs k >= 1 lifted by added white noise to the noise of an acquisition j < k
    boost_b: float = 2.0  # stage B multiplies the consistency and T weights by this
    curv_late: float = 0.5  # stage B multiplies the curvature weight by this (less peak flattening)
    peak_crop_frac: float = 0.8  # share of crops centred on a peak-mask point
    weights: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    device: str = "auto"
    amp: bool = True


@dataclass
class TrainArrays:
    """Training arrays, each sample divided by the max |x| of its input (as at inference)."""

    x: np.ndarray  # [N, K+1, L]
    target: np.ndarray  # [N, K+1, L]: pseudo truth when acquisition k is the input (k left out)
    sigma: np.ndarray  # [N, K+1]: noise std of each acquisition (same normalization)
    peak: np.ndarray  # [N, L] float 0/1
    base: np.ndarray  # [N, L] float 0/1
    T: float


def build_train_data(
    x: np.ndarray,
    prep: PrepConfig = PrepConfig(),
    T: float | None = None,
    keep_out: tuple[int, ...] = (),  # acquisitions no target may contain (fine-tuning: the input)
) -> TrainArrays:
    """Preprocess every set and normalize it; T defaults to the median estimate over sets."""
    preps: list[Prepared] = prepare_many(x, prep)
    scale = np.array([np.abs(p.x[0]).max() for p in preps])[:, None, None]
    T_use = check_T(float(np.median([p.T_hat for p in preps])) if T is None else T)
    target = np.stack(
        [
            [pseudo_truth(p.x, p.sigma, prep, exclude=(k, *keep_out)) for k in range(len(p.x))]
            for p in preps
        ]
    )
    return TrainArrays(
        x=(np.stack([p.x for p in preps]) / scale).astype(np.float32),
        target=(target / scale).astype(np.float32),
        sigma=(np.stack([p.sigma for p in preps]) / scale[:, :, 0]).astype(np.float32),
        peak=np.stack([p.peak_mask for p in preps]).astype(np.float32),
        base=np.stack([p.base_mask for p in preps]).astype(np.float32),
        T=T_use,
    )


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 (the shared schedule of lib/core/schedule.py, per step)."""
    return warmup_decay(step, warmup, total, decay="cosine", offset=1.0)


def crop_starts(
    data: TrainArrays, idx: np.ndarray, crop: int, frac: float, rng: np.random.Generator
) -> np.ndarray:
    """Window starts, most centred on a random peak point so that crops see peaks."""
    L = data.x.shape[-1]
    starts = rng.integers(0, L - crop + 1, size=len(idx))
    for j, i in enumerate(idx):
        pk = np.flatnonzero(data.peak[i])
        if len(pk) and rng.random() < frac:
            starts[j] = np.clip(rng.choice(pk) - crop // 2, 0, L - crop)
    return starts


def renoise(
    sigma: np.ndarray, kin: np.ndarray, share: float, crop: int, rng: np.random.Generator
) -> torch.Tensor:
    """White noise [B, crop] that lifts a share of inputs k >= 1 to the noise std of a random j < k.

    Acquisition k is aligned to the others through high-SNR spectra, so its pseudo truth is
    registered to it far better than to the noisy acquisition 0, whose target is misplaced by
    the error of the shift estimated from its own noise; on narrow lines that misplacement
    teaches the network to blur. Added white noise (the FID noise is white) gives such inputs
    the low SNRs of acquisition 0 without its misregistration; sigma [B, K+1] are the measured levels.
    """
    out = np.zeros((len(kin), crop), dtype=np.float32)
    for b, k in enumerate(kin):
        if k >= 1 and rng.random() < share:
            j = int(rng.integers(0, k))
            extra = np.sqrt(max(float(sigma[b, j]) ** 2 - float(sigma[b, k]) ** 2, 0.0))
            out[b] = rng.normal(0.0, extra, crop)
    return torch.from_numpy(out)


def consistency_set(
    K: int, stage: str, progress: float, n_cons: int, rng: np.random.Generator
) -> list[int]:
    """Acquisition indices for the consistency/T terms; stage B's window opens towards k=0."""
    if stage == "A":
        return [0, int(rng.integers(1, K + 1))]
    kmin = round((K - 1) * (1 - progress))  # curriculum: K-1 .. 0
    pool = np.arange(kmin, K + 1)
    return sorted(rng.choice(pool, size=min(n_cons, len(pool)), replace=False).tolist())


def loss_unit(x: torch.Tensor, noise_units: bool) -> torch.Tensor:
    """Per-sample unit [B, 1] of the losses: the input's noise std, or 1 (max-normalized units)."""
    if not noise_units:
        return x.new_ones(x.shape[0], 1)
    return noise_std(x.float()).clamp_min(1e-12)


def batch_loss(
    model: torch.nn.Module,
    xb: torch.Tensor,
    xin: torch.Tensor,
    sb: torch.Tensor,
    mb: torch.Tensor,
    bb: torch.Tensor,
    ks: list[int],
    w: LossWeights,
    T: float,
    noise_units: bool = True,
) -> dict[str, torch.Tensor]:
    """All loss terms of one batch: inputs xin against targets sb, and acquisitions ks of xb
    for the consistency/T terms, in one pass through the model.

    In noise units every sample's error counts relative to its own input noise, as the time
    factor does; in max units the noisiest samples dominate and reward smoothing the rest.
    """
    multi = w.cons > 0 or w.T > 0
    parts = [xin] + ([xb[:, k] for k in ks] if multi else [])
    y = model(torch.cat(parts)).float().chunk(len(parts))
    u = loss_unit(xin, noise_units)
    y0, s0 = y[0] / u, sb / u
    out = {
        "rec": reconstruction_loss(y0, s0, mb, w),
        "deriv": derivative_loss(y0, s0),
        "curv": curvature_loss(y0, bb),
    }
    zero = y[0].new_zeros(())
    out["top"] = top_bias_loss(y0, s0, w.top_min) if w.top > 0 else zero
    uc = loss_unit(xb[:, ks[0]], noise_units)  # the noisiest acquisition of the set sets the unit
    ys = [v / uc for v in y[1:]]
    xs = [xb[:, k] / uc for k in ks]
    out["cons"] = consistency_loss(ys) if w.cons > 0 else zero
    out["T"] = residual_ratio_loss(xs, ys, ks, bb, T) if w.T > 0 else zero
    out["total"] = (
        out["rec"]
        + w.deriv * out["deriv"]
        + w.curv * out["curv"]
        + w.cons * out["cons"]
        + w.T * out["T"]
        + w.top * out["top"]
    )
    return out


def stage_weights(cfg: DenoiserTrainConfig, stage: str) -> LossWeights:
    """Stage A uses the base weights; stage B boosts consistency/T and relaxes curvature."""
    w = cfg.weights
    if stage == "A":
        return w
    return replace(w, curv=w.curv * cfg.curv_late, cons=w.cons * cfg.boost_b, T=w.T * cfg.boost_b)


def settings(cfg: DenoiserTrainConfig, net: UNetConfig) -> dict:
    """What a resumed run must share with the one that wrote the checkpoint (device and AMP may
    differ, and the run may be extended by more epochs)."""
    t = {k: v for k, v in asdict(cfg).items() if k not in ("device", "amp", "epochs_a", "epochs_b")}
    return json.loads(json.dumps({"train": t, "net": asdict(net)}, default=str))


# what train() writes into every checkpoint and reads back on resume
CHECKPOINT_KEYS = ("model", "opt", "sched", "epoch", "history", "settings")


def check_resume(path: Path, state: dict, now: dict) -> None:
    """Refuse to continue a checkpoint written with other settings (it would mix two runs)."""
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise TypeError(
            f"{path} is not a denoiser checkpoint (no 'model' state dict): it was edited or "
            "written by other code; start a new run in another checkpoint path"
        )
    then = state.get("settings")
    if then is None:
        raise ValueError(
            f"{path} records no settings (written by an older version); it cannot be checked, "
            "so start a new run (another checkpoint path)"
        )
    diff = {
        f"{part}.{k}": d
        for part in now
        for k, d in settings_diff(then.get(part, {}), now[part]).items()
    }
    if diff:
        shown = ", ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in list(diff.items())[:4])
        raise ValueError(
            f"{path} was written with other settings ({shown}); resume with the same settings "
            "or start a new run in another checkpoint path"
        )
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(
            f"{path} lacks {', '.join(missing)} (a denoiser checkpoint holds "
            f"{', '.join(CHECKPOINT_KEYS)}): it was edited or written by other code; delete it "
            "and retrain, or start a new run in another checkpoint path"
        )
    check_finite(state["model"], path)


def restore(path: Path, state: dict, model: UNet1D, opt, sched) -> tuple[int, list[dict]]:
    """Load a checked checkpoint into the model, optimizer and schedule; (completed epochs, history)."""
    # the shared checks (lib/core/state.py): load_state_dict's own errors name neither file nor fix
    check_state_keys(model.state_dict(), state["model"], path)
    start = check_epoch(state["epoch"], path)
    model.load_state_dict(state["model"])
    try:
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ValueError(
            f"{path}: its optimizer or schedule state does not fit this model ({e}); it was "
            "edited or written by other code: delete it and retrain"
        ) from None
    return start, list(state["history"])


def train(
    data: TrainArrays,
    cfg: DenoiserTrainConfig = DenoiserTrainConfig(),
    net: UNetConfig = UNetConfig(),
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    init: dict | None = None,
):
    """Train a UNet1D (from the weights `init` when given: fine-tuning); returns (model, history)."""
    L = data.x.shape[-1]
    crop = cfg.crop or L
    if crop % 16 or crop > L:
        raise ValueError(
            f"crop={cfg.crop}: must be divisible by 16 and at most the spectrum length {L}"
        )
    dev = pick_device(cfg.device)
    seed_weights(cfg.seed)
    model = UNet1D(net)
    if init is not None:
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in init.items()}
        )
    model = model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n, K = data.x.shape[0], data.x.shape[1] - 1
    if not cfg.input_acqs or not set(cfg.input_acqs) <= set(range(K + 1)):
        raise ValueError(
            f"input_acqs={cfg.input_acqs}: give acquisitions among 0..{K} (the acquisitions of a set); "
            "with two acquisitions use (0,) or (1,)"
        )
    if not 0 <= cfg.renoise <= 1:
        raise ValueError(f"renoise={cfg.renoise}: a share, between 0 and 1")
    steps = cfg.steps_per_epoch or max(1, n // cfg.batch)
    epochs = cfg.epochs_a + cfg.epochs_b
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.warmup_epochs * steps, epochs * steps)
    )
    history, start = [], 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.exists():
        if not resume:
            raise FileExistsError(
                f"checkpoint {ckpt} exists; pass resume=True to continue it or choose another path"
            )
        st = load_state(ckpt, dev)
        check_resume(ckpt, st, settings(cfg, net))
        start, history = restore(ckpt, st, model, opt, sched)
    tens = {k: torch.from_numpy(getattr(data, k)) for k in ("x", "target", "peak", "base")}
    use_amp = cfg.amp and dev.type == "cuda"
    for epoch in tqdm(
        range(start, epochs), desc="epochs", disable=not progress, initial=start, total=epochs
    ):
        stage = "A" if epoch < cfg.epochs_a else "B"
        prog = (epoch - cfg.epochs_a) / max(1, cfg.epochs_b - 1) if stage == "B" else 0.0
        w = stage_weights(cfg, stage)
        rng = epoch_rng(cfg.seed, epoch)  # per-epoch streams: resume reproduces the run
        torch.manual_seed(epoch_seed(cfg.seed, epoch))
        model.train()
        t0, sums = time.perf_counter(), {}
        for _ in range(steps):
            idx = rng.choice(n, size=min(cfg.batch, n), replace=False)
            st = crop_starts(data, idx, crop, cfg.peak_crop_frac, rng)
            win = torch.from_numpy(st[:, None] + np.arange(crop)[None])
            it = torch.from_numpy(idx)[:, None]
            xb = torch.stack([tens["x"][it, k, win] for k in range(K + 1)], 1)
            if cfg.renoise > 0 and K >= 1:
                # in the consistency/T terms too, acquisition 0 (registered to the others only as
                # well as its noise allows) is replaced by acquisition 1 lifted to its noise level
                xb[:, 0] = xb[:, 1] + renoise(
                    data.sigma[idx], np.ones(len(idx), dtype=int), 1.0, crop, rng
                )
            xb = xb.to(dev)
            mb, bb = (tens[k][it, win].to(dev) for k in ("peak", "base"))
            # each sample's input is one acquisition, its target the pseudo truth without it
            kin = rng.choice(np.asarray(cfg.input_acqs), size=len(idx))
            xin = tens["x"][it, torch.from_numpy(kin)[:, None], win]
            xin = xin + renoise(data.sigma[idx], kin, cfg.renoise, crop, rng)
            xin = xin.to(dev)
            sb = tens["target"][it, torch.from_numpy(kin)[:, None], win].to(dev)
            ks = consistency_set(K, stage, prog, cfg.n_cons, rng)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
                losses = batch_loss(model, xb, xin, sb, mb, bb, ks, w, data.T, cfg.noise_units)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / steps
        history.append(
            {
                "epoch": epoch + 1,
                "stage": stage,
                **sums,
                "lr": sched.get_last_lr()[0],
                "seconds": time.perf_counter() - t0,
            }
        )
        if ckpt:
            save_state(  # atomic: temp file, then rename (lib/core/state.py)
                ckpt,
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "net": asdict(net),
                    "settings": settings(cfg, net),
                },
            )
    model.eval()
    return model, history
