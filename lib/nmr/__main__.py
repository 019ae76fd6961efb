"""Command line of the NMR denoiser.

python -m lib.nmr denoise ACQ [ACQ ...] --out DIR [--model FILE] [--no-fine-tune]
python -m lib.nmr make-series FID --snr 10 --out DIR      # a replicate series from one FID
python -m lib.nmr train --profile cpu --out models/nmr_unet_cpu.pt
"""

from __future__ import annotations

import os

# One BLAS thread unless the user sets it: Cadzow's SVDs and the scoring are many small dense
# products, and on a busy 2-core machine OpenBLAS's default threads made a call about 6x slower.
# This must run before numpy is imported (lib and lib.nmr import nothing at package level).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import yaml

from ..core.paths import REPO_ROOT, repo_path
from ..core.profiles import load_profile, strict_yaml_load
from ..core.provenance import git_commit, versions
from ..core.settings import check_value
from .denoiser import denoise_series
from .fileio import MAX_POINTS, read_fid, write_pipe
from .finetune import FineTune
from .modelfile import SHIPPED, save_model
from .recipe import PARAMETER_NAMES, PARAMETERS, PROFILE_SECTION, recipe, recipe_params
from .report import check_out_dir, write_result
from .series import read_series, replicate_fids, series_from_fids
from .simulate import simulate_set
from .train import build_train_data, train


def parse_overrides(items: list[str]) -> dict:
    """name=value pairs read as YAML and checked against the recipe parameters' annotations
    (lib/nmr/recipe.py, PARAMETERS), as profile values are."""
    ann = {"preset": "str", **{k: p.annotation for k, p in PARAMETERS.items()}}
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in ann:
            raise SystemExit(
                f"override {item!r}: expected name=value with a recipe parameter name; "
                f"known: {', '.join(PARAMETER_NAMES)}"
            )
        if name in out:  # the last one winning silently hides a typo in a long command
            raise SystemExit(f"override {name} is given twice (last {item!r}); give it once")
        try:
            out[name] = check_value(
                name, strict_yaml_load(text), ann[name], owner="lib/nmr/recipe.py"
            )
        except (TypeError, yaml.YAMLError) as e:
            raise SystemExit(f"override {item!r}: {e}") from None
    return out


def train_params(profile: str, overrides: list[str]) -> dict:
    """A profile's notebook-05 section, then the command line's name=value overrides."""
    return {**load_profile(profile).get(PROFILE_SECTION, {}), **parse_overrides(overrides)}


def cmd_train(a: argparse.Namespace) -> int:
    """Train the denoiser as notebook 05 does under a profile and save it with its card."""
    params = train_params(a.profile, a.overrides)
    R = recipe(recipe_params(params))
    out = repo_path(a.out)
    if out.exists() and not a.overwrite:
        raise SystemExit(f"{out} exists; choose another --out or pass --overwrite")
    commit = git_commit()  # before training: the tree may change while it runs
    t0 = time.perf_counter()
    data = build_train_data(simulate_set(R.sim, R.n_train, seed=R.seed).x, R.prep)
    model, history = train(data, R.train, R.net, progress=True)
    secs = time.perf_counter() - t0
    made_by = {
        "command": " ".join(["python -m lib.nmr train --profile", a.profile, *a.overrides]),
        "profile": a.profile,
        "parameters": params,  # the profile's section, then the overrides, as given
        "n_train": R.n_train,  # the rest of what they resolved to: sim, train, and net on the card
        "sim": asdict(R.sim),
        "train": asdict(R.train),
        "T_used": data.T,
        "seconds": round(secs, 1),
        "final_loss": history[-1]["total"],
        "git_commit": commit,
        "versions": versions(),
    }
    save_model(model.cpu(), out, made_by, overwrite=a.overwrite)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and its card, {secs:.0f} s")
    return 0


def cmd_make_series(a: argparse.Namespace) -> int:
    """Write a replicate series made from one measured FID (NMRPipe files) and its noiseless reference."""
    out = Path(a.out)
    files = [f"acq{k}.fid" for k in range(a.n_acq)] + ["reference/clean.fid"]
    check_out_dir(out, a.overwrite, tuple(files))  # before any work
    raw = read_fid(a.fid, max_points=a.max_points)
    fids = replicate_fids(raw, a.snr, a.T, a.n_acq, a.seed)
    for f, n in zip([*fids, raw], [out / f for f in files]):
        write_pipe(f, n, overwrite=a.overwrite)
    print(
        f"wrote {len(fids)} acquisitions (input SNR {a.snr}, T {a.T}) to {out}/acq*.fid and the noiseless "
        f"reference to {out}/reference/clean.fid"
    )
    return 0


def score_lines(scores: pd.DataFrame) -> str:
    """The scores as printed: each factor with its 90% interval (scores.csv holds every column)."""
    sc = scores.astype(float)

    def span(part: str) -> pd.Series:
        f, lo, hi = (sc[c] for c in (f"time_factor_{part}", f"{part}_p5", f"{part}_p95"))
        return pd.Series(
            [f"{a:.3g} [{b:.3g}, {c:.3g}]" for a, b, c in zip(f, lo, hi)], index=sc.index
        )

    view = pd.DataFrame(
        {
            "peak factor [90%]": span("peak"),
            "whole factor [90%]": span("whole"),
            "height_err": sc["height_err"].round(3),
        }
    )
    return view.to_string()


def cmd_denoise(a: argparse.Namespace) -> int:
    """Denoise a replicate series and write the spectrum, the plot, the scores and the provenance."""
    check_out_dir(a.out, a.overwrite)  # before any work: a clash is found in seconds, not minutes
    series = read_series(
        a.acquisitions, n_points=a.n_points or None, fmt=a.format, max_points=a.max_points
    )
    reference = None
    if a.reference:
        # processed exactly like the series: same length, same shared phase, same frame
        ref = read_fid(a.reference, a.format, max_points=a.max_points)
        ref_series = series_from_fids([ref], len(series.ppm), phase=series.phase)
        if abs(ref_series.sw_hz - series.sw_hz) > 1e-6 * series.sw_hz:
            raise SystemExit(
                f"--reference {a.reference} has another spectral width than the series; "
                "give the noiseless spectrum of the same experiment"
            )
        reference = ref_series.spectra[0]
    ft = FineTune(steps=a.steps, seed=a.seed)
    r = denoise_series(
        series, a.model or None, fine_tune_on=a.fine_tune, ft=ft, reference=reference
    )
    r.info.update(
        sources=list(series.sources),
        phase_deg=list(series.phase),
        n_points=len(series.ppm),
        nucleus=series.nucleus,
        command=" ".join(sys.argv),
    )
    paths = write_result(
        r,
        a.out,
        overwrite=a.overwrite,
        title=f"{Path(series.sources[0]).name}: {len(series)} acquisitions",
    )
    print(
        f"{len(series)} acquisitions, {len(series.ppm)} points, SNR of each: "
        f"{', '.join(f'{q:.0f}' for q in series.snr)}"
    )
    if r.scores is not None:
        print(score_lines(r.scores))
    skipped = r.info.get("fine_tune", {}).get("skipped")
    why = [f"fine-tuning skipped: {skipped}"] if skipped else []
    if "blend" in r.info and r.info["output"] != "input":
        b = r.info["blend"]
        why.append(
            f"the model's output weighs {b['unet_weight']:.3g} against the input's "
            f"{1 - b['unet_weight']:.3g}: the input's SNR {b['input_snr']:.0f} is beyond the "
            f"model's training range (up to {b['trained_snr_top']:g})"
        )
    if "kept_input" in r.info:
        why.append(
            f"the input, unchanged: the denoiser scored clearly below it ({r.info['kept_input']})"
        )
    print(f"output: {r.info['output']}" + (f" ({'; '.join(why)})" if why else ""))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def positive(text: str) -> int:
    """An argument that must be a whole number >= 1 (--max-points)."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return v


def add_max_points(p: argparse.ArgumentParser) -> None:
    """The point limit's option, shared by the commands that read FIDs."""
    p.add_argument(
        "--max-points",
        type=positive,
        default=MAX_POINTS,
        help=f"most complex points one acquisition may declare (default {MAX_POINTS} = 2**20); "
        "larger files are refused before their data are read",
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    ap = argparse.ArgumentParser(prog="python -m lib.nmr", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the denoiser with a profile's notebook-05 settings")
    t.add_argument("--profile", default="cpu", help="env/profiles/<name>.yaml (default cpu)")
    t.add_argument("--out", default=str(SHIPPED.relative_to(REPO_ROOT)), help="model file to write")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    t.add_argument(
        "overrides",
        nargs="*",
        help="recipe parameters (lib/nmr/recipe.py), name=value, over the profile's",
    )
    t.set_defaults(fn=cmd_train)
    d = sub.add_parser("denoise", help="denoise a replicate series of one sample")
    d.add_argument(
        "acquisitions", nargs="+", help="experiment folders, data files, or a folder holding them"
    )
    d.add_argument(
        "--out",
        required=True,
        help="folder for denoised.csv, denoised.png, scores.csv, denoise.json",
    )
    d.add_argument(
        "--model",
        default="",
        help=f"model file (default: the shipped {SHIPPED.relative_to(REPO_ROOT)})",
    )
    d.add_argument(
        "--fine-tune",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fine-tune on the series first, highest-SNR acquisition held out (default: whenever "
        "the series allows it: 4+ replicates, cleaner than the one denoised; --fine-tune makes a "
        "series that does not an error, --no-fine-tune uses the given model alone, in seconds)",
    )
    d.add_argument("--steps", type=int, default=FineTune.steps, help="fine-tuning steps")
    d.add_argument("--seed", type=int, default=0, help="fine-tuning seed")
    d.add_argument(
        "--reference", default="", help="noiseless spectrum of the same sample to score against"
    )
    d.add_argument(
        "--n-points",
        type=int,
        default=0,
        help="zero-fill to this many points (default: next power of 2)",
    )
    d.add_argument(
        "--format", default="auto", help="bruker, varian, pipe, jcampdx, spinsolve or auto"
    )
    d.add_argument("--overwrite", action="store_true", help="replace earlier outputs in --out")
    add_max_points(d)
    d.set_defaults(fn=cmd_denoise)
    m = sub.add_parser(
        "make-series", help="a replicate series from one measured FID, with added noise"
    )
    m.add_argument("fid", help="a raw FID (Bruker folder, JCAMP-DX, NMRPipe, Varian)")
    m.add_argument("--out", required=True, help="folder for acq0.fid ... and reference/clean.fid")
    m.add_argument("--snr", type=float, default=10.0, help="tallest-line SNR of acquisition 0")
    m.add_argument(
        "--T", type=float, default=2.0, help="SNR ratio between consecutive acquisitions"
    )
    m.add_argument("--n-acq", type=int, default=4, help="acquisitions in the series")
    m.add_argument("--seed", type=int, default=0, help="noise seed")
    m.add_argument("--overwrite", action="store_true", help="replace earlier files in --out")
    add_max_points(m)
    m.set_defaults(fn=cmd_make_series)
    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
