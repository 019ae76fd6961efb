"""A user's replicate series: reading, checking, denoising, fine-tuning, model files and the CLI."""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.nmr.__main__ import main as nmr_cli
from lib.nmr.denoiser import as_model
from lib.nmr.denoiser import denoise_series as call_denoise
from lib.nmr.fileio import read_fid, write_pipe
from lib.nmr.finetune import KEEP_MARGIN, FineTune
from lib.nmr.lowrank import CALL_RANKS
from lib.nmr.modelfile import card_path, load_denoiser, save_model
from lib.nmr.preprocess import diff_sigma, prepare
from lib.nmr.realdata import replicate_sets
from lib.nmr.report import write_result
from lib.nmr.series import (
    read_series,
    replicate_fids,
    series_from_arrays,
    series_from_fids,
    tallest_line,
    with_noise,
)
from lib.nmr.unet import UNet1D, UNetConfig, denoise

DATA = Path(__file__).parents[1] / "data" / "nmr"
JCAMP = DATA / "jcamp" / "140-67-0_1h.fid.dx"
BRUKER = DATA / "bruker" / "bruker1" / "1"


def denoise_series(*args, **kw):
    """The call with the never-worse rule off: the untrained tiny model of these tests is worse
    than any input, and the fine-tuning logic is what they test (the rule has its own test)."""
    kw.setdefault("never_worse", False)
    return call_denoise(*args, **kw)


@pytest.fixture(scope="module")
def raw():
    return read_fid(JCAMP)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    m = UNet1D(UNetConfig(base=8))
    torch.nn.init.normal_(
        m.head.weight, std=0.01
    )  # not the identity, so outputs differ from inputs
    return save_model(m, tmp_path_factory.mktemp("model") / "tiny.pt", {"command": "test"})


@pytest.fixture()
def series_dir(raw, tmp_path) -> Path:
    for k, f in enumerate(replicate_fids(raw, 10.0, 2.0, 4, seed=0)):
        write_pipe(f, tmp_path / "series" / f"acq{k}.fid")
    write_pipe(raw, tmp_path / "clean.fid")
    return tmp_path


def test_replicate_series_has_the_asked_snr_and_order(raw, series_dir):
    # files named so that their sorted order is not the SNR order: the series sorts by SNR itself
    files = sorted((series_dir / "series").glob("*.fid"))[::-1]
    s = read_series(files)
    assert [Path(p).name for p in s.sources] == ["acq0.fid", "acq1.fid", "acq2.fid", "acq3.fid"]
    assert np.allclose(s.snr / s.snr[0], [1, 2, 4, 8], rtol=0.15)
    assert s.snr[0] == pytest.approx(10.0, rel=0.15)
    assert s.ppm[0] < s.ppm[-1] and 2.0 < s.ppm.mean() < 9.0  # ascending 1H ppm axis from nmrglue
    assert s.nucleus == "1H"


def test_one_phase_for_every_acquisition(raw):
    fids = replicate_fids(raw, 5.0, 2.0, 3, seed=1)
    s = series_from_fids(fids)
    ref = series_from_fids([raw], phase=s.phase).spectra[0]
    # acquisition 0 differs from the clean spectrum processed with the same phase by noise alone
    resid = s.spectra[0] - ref
    assert abs(np.mean(resid)) < 0.2 * diff_sigma(s.spectra[0])
    assert np.std(resid) == pytest.approx(diff_sigma(s.spectra[0]), rel=0.1)


def test_replicate_sets_reference_is_noiseless_and_aligned(raw):
    ds = replicate_sets(raw, 10.0, 2.0, 4, 2, seed=3)
    assert ds.x.shape == (2, 4, 8192) and ds.truth.shape == (2, 8192)
    noise = ds.x[:, 0] - ds.truth
    assert np.abs(ds.truth).max() / noise.std() == pytest.approx(10.0, rel=0.2)


@pytest.mark.parametrize("path", [JCAMP, BRUKER], ids=["jcamp", "one-line bruker"])
def test_prepare_on_real_replicates(path):
    """Replicates of one measured FID (no true shift): aligned to a fraction of a point, fused by
    noise, with a peak mask near the lines' true share (the one-line FID had 9% masked and shifts of
    1.6 points when noise x noise decided the correlation and the mask followed the noisiest)."""
    raw = read_fid(path)
    ds = replicate_sets(raw, 5.0, 2.0, 4, 4, seed=11)
    among, onto = [], []
    for x, truth in zip(ds.x.astype(np.float64), ds.truth):
        p = prepare(x)
        onto.append(p.shifts[-1])
        among += list(p.shifts[1:-1] - p.shifts[-1])
        lines = truth > 0.1 * truth.max()  # 4 noise std in the best acquisition
        wings = truth > 0.02 * truth.max()
        assert p.peak_mask[lines].mean() > 0.95 and p.peak_mask.mean() < 3 * wings.mean() + 0.01
        # acquisition k's noise std halves with k (T = 2): the fused truth must weigh by it
        assert np.allclose(p.sigma[:-1] / p.sigma[1:], 2.0, rtol=0.15)
    # among acquisitions 1..K (what fine-tuning pairs) a fraction of a point (was 0.8 RMS)
    assert np.sqrt(np.mean(np.square(among))) < 0.25
    # onto the input at SNR 5 a Cramer-Rao-sized error (0.3-0.6 point RMS over draws on 4-point
    # lines), never the 1.6 points of the noise-decided correlation
    assert np.sqrt(np.mean(np.square(onto))) < 0.75 and np.abs(onto).max() < 1.5


@pytest.mark.parametrize("path", [JCAMP, BRUKER], ids=["jcamp", "one-line bruker"])
def test_series_phase_is_close_to_the_clean_fids_at_snr_5(path):
    """ACME on the unbroadened noisy sum missed the clean phase by 0.28-0.37 (relative L2 of the
    phased clean spectrum) on these FIDs at SNR 5; on the line-broadened sum by about 0.1."""
    from lib.nmr.fileio import auto_phase, phased, raw_spectrum

    raw = read_fid(path)
    n = len(series_from_fids([raw]).ppm)
    clean = raw_spectrum(raw, n)
    own = phased(raw, clean, auto_phase(clean)).real
    for d in range(3):
        s = series_from_fids(replicate_fids(raw, 5.0, 2.0, 4, seed=50 + d))
        err = np.linalg.norm(phased(raw, clean, s.phase).real - own) / np.linalg.norm(own)
        assert err < 0.2


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda r: replace(r, fid=r.fid[:-16]), "length"),
        (lambda r: replace(r, sw_hz=r.sw_hz * 1.01), "spectral width"),
        (lambda r: replace(r, carrier_ppm=r.carrier_ppm + 0.5), "carrier"),
        (lambda r: replace(r, obs_mhz=r.obs_mhz * 0.8), "spectrometer frequency"),
        (lambda r: replace(r, meta={"nucleus": "13C"}), "nucleus"),
    ],
)
def test_members_that_differ_are_refused(raw, change, words):
    fids = replicate_fids(raw, 10.0, 2.0, 3, seed=0)
    with pytest.raises(ValueError, match=words) as e:
        series_from_fids([fids[0], change(fids[1]), fids[2]])
    assert "drop the odd acquisition" in str(e.value)


def test_folder_that_is_no_experiment(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not an NMR experiment.*point to the experiment folders"):
        read_series([tmp_path])


@pytest.mark.parametrize("sfo1", ["0", None])
def test_acqus_without_spectrometer_frequency(tmp_path, sfo1):
    exp = tmp_path / "1"
    shutil.copytree(BRUKER, exp)
    lines = (exp / "acqus").read_text().splitlines()
    lines = [
        f"##$SFO1= {sfo1}" if ln.startswith("##$SFO1=") else ln
        for ln in lines
        if sfo1 is not None or not ln.startswith("##$SFO1=")
    ]
    (exp / "acqus").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="SFO1") as e:
        read_fid(exp)
    assert "fix" in str(e.value)


def test_all_zero_and_pure_noise_are_refused(raw):
    with pytest.raises(ValueError, match="all zeros"):
        series_from_arrays(np.zeros((2, 1024), complex), sw_hz=4000.0, obs_mhz=400.0)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(3, 4096)) + 1j * rng.normal(size=(3, 4096))
    with pytest.raises(ValueError, match="no signal.*right experiments"):
        series_from_arrays(noise, sw_hz=4000.0, obs_mhz=400.0)


def test_arrays_need_a_spectral_width():
    with pytest.raises(ValueError, match="spectral width"):
        series_from_arrays(np.ones((2, 64), complex), sw_hz=0.0, obs_mhz=400.0)


def test_model_file_round_trip_and_checks(tiny_model, tmp_path):
    m = load_denoiser(tiny_model)
    x = np.random.default_rng(0).normal(size=1024).astype(np.float32)
    m32 = UNet1D(UNetConfig(base=8))
    torch.manual_seed(0)
    # float16 storage changes outputs by far less than the noise
    y = denoise(m, x)
    assert np.isfinite(y).all() and not np.allclose(y, x)
    # the card guards the weights: another configuration, a changed file, a missing card
    card = json.loads(card_path(tiny_model).read_text())
    other = tmp_path / "other.pt"
    shutil.copy(tiny_model, other)
    card_path(other).write_text(json.dumps({**card, "net": {**card["net"], "base": 16}}))
    with pytest.raises(ValueError, match="do not fit the card's configuration"):
        load_denoiser(other)
    with open(other, "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="checksum mismatch.*restore or retrain"):
        load_denoiser(other)
    card_path(other).unlink()
    with pytest.raises(FileNotFoundError, match="has no card"):
        load_denoiser(other)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_model(m32, tiny_model, {})


def test_half_precision_storage_is_harmless(tmp_path):
    torch.manual_seed(1)
    m = UNet1D(UNetConfig(base=8))
    torch.nn.init.normal_(m.head.weight, std=0.05)
    x = np.random.default_rng(1).normal(size=(2, 2048)).astype(np.float32)
    y32 = denoise(m, x)
    y16 = denoise(load_denoiser(save_model(m, tmp_path / "m.pt", {})), x)
    assert np.abs(y16 - y32).max() < 1e-2 * x.std()


def test_denoise_scores_against_held_out_acquisitions(series_dir, tiny_model):
    s = read_series([series_dir / "series"])
    r = denoise_series(s, tiny_model, fine_tune_on=False, progress=False)
    assert r.info["reference"] == "co-add of acquisitions [1, 2, 3]" and "fine_tune" not in r.info
    assert {"input", "unet", "savgol", "wavelet", "exp_lb", "cadzow"} <= set(r.scores.index)
    assert r.info["knobs"]["cadzow"] in CALL_RANKS  # the call's coarser rank grid
    assert r.scores.loc["input", "time_factor_whole"] == pytest.approx(1.0)
    assert r.scores.loc["savgol", "time_factor_whole"] > 1.5  # a smoother truly helps on real lines


def test_fine_tuning_never_sees_the_scoring_acquisition(series_dir, tiny_model):
    s = read_series([series_dir / "series"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = denoise_series(s, tiny_model, fine_tune_on=True, ft=FineTune(steps=10), progress=False)
    assert r.info["fine_tune"]["trained_on"] == [0, 1, 2]
    # a fine-tune that scores worse on the held-out acquisition says so
    before, after = r.scores.loc[["unet", "unet fine-tuned"], "time_factor_peak"]
    lowered = any("fine-tuning lowered" in str(w.message) for w in caught)
    assert lowered == (after < KEEP_MARGIN * before)
    # ... and then keeps the given model's output
    assert r.info["output"] == ("unet" if lowered else "unet fine-tuned")
    assert r.info["reference"] == "co-add of acquisitions [3]"
    assert "unet fine-tuned" in r.scores.index
    three = replace(s, spectra=s.spectra[:3], snr=s.snr[:3], sources=s.sources[:3])
    with pytest.raises(ValueError, match="at least 4 acquisitions"):
        denoise_series(three, tiny_model, fine_tune_on=True, progress=False)
    # by default a series too short to fine-tune honestly is denoised by the given model, and says so
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = denoise_series(three, tiny_model, progress=False)
    assert r.info["output"] == "unet" and "at least 4" in r.info["fine_tune"]["skipped"]
    assert r.info["reference"] == "co-add of acquisitions [1, 2]"


def test_outputs_are_not_overwritten(series_dir, tiny_model, tmp_path):
    s = read_series([series_dir / "series"])
    r = denoise_series(s, tiny_model, fine_tune_on=False, progress=False)
    out = tmp_path / "out"
    write_result(r, out)
    before = (out / "denoised.csv").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_result(r, out)
    assert (out / "denoised.csv").read_bytes() == before


def test_cli_make_series_then_denoise(raw, tiny_model, tmp_path, capsys):
    assert nmr_cli(["make-series", str(JCAMP), "--snr", "5", "--out", str(tmp_path / "s")]) == 0
    assert (
        nmr_cli(
            [
                "denoise",
                str(tmp_path / "s"),
                "--out",
                str(tmp_path / "o"),
                "--model",
                str(tiny_model),
                "--reference",
                str(tmp_path / "s" / "reference" / "clean.fid"),
                "--steps",
                "10",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "peak factor [90%]" in out and "unet fine-tuned" in out  # fine-tuned by default
    scores = (tmp_path / "o" / "scores.csv").read_text().splitlines()[0].split(",")
    assert {"time_factor_peak", "peak_p5", "peak_p95", "limit_peak"} <= set(scores)
    csv = (tmp_path / "o" / "denoised.csv").read_text().splitlines()
    assert csv[0] == "ppm,input,denoised,reference" and len(csv) == 8193
    info = json.loads((tmp_path / "o" / "denoise.json").read_text())
    assert info["reference"] == "given" and len(info["sources"]) == 4
    assert info["fine_tune"]["steps"] == 10 and info["fine_tune"]["trained_on"] == [0, 1, 2, 3]
    args = ["denoise", str(tmp_path / "s"), "--out", str(tmp_path / "o2"), "--model"]
    assert nmr_cli([*args, str(tiny_model), "--no-fine-tune"]) == 0
    assert "fine_tune" not in json.loads((tmp_path / "o2" / "denoise.json").read_text())
    # a single acquisition cannot be fine-tuned honestly
    with pytest.raises(SystemExit, match="at least 4 acquisitions"):
        nmr_cli(
            [
                "denoise",
                str(tmp_path / "s" / "acq3.fid"),
                "--out",
                str(tmp_path / "o1"),
                "--model",
                str(tiny_model),
                "--fine-tune",
            ]
        )


def test_train_overrides_are_typed():
    from lib.nmr.__main__ import parse_overrides

    assert parse_overrides(
        ["preset=paper", "lr=0.002", "base=16", "linewidth_max_hz=5", "input_acqs=[1]"]
    ) == {
        "preset": "paper",
        "lr": 0.002,
        "base": 16,
        "linewidth_max_hz": 5.0,
        "input_acqs": [1],
    }
    with pytest.raises(SystemExit, match="base = 1.5 is float.*whole number"):
        parse_overrides(["base=1.5"])
    with pytest.raises(SystemExit, match="lr = 'fast' is str"):
        parse_overrides(["lr=fast"])
    with pytest.raises(SystemExit, match="known: "):
        parse_overrides(["flip=True"])
    with pytest.raises(SystemExit, match="known: "):  # notebook 05's own: it trains nothing
        parse_overrides(["ablations=false"])


def test_processed_pipe_spectra_are_a_series(raw, tiny_model, tmp_path):
    import nmrglue as ng

    s = series_from_fids(replicate_fids(raw, 10.0, 2.0, 3, seed=4))
    for k, y in enumerate(s.spectra):
        udic = ng.fileiobase.create_blank_udic(1)
        udic[0].update(
            size=8000,
            complex=False,
            encoding="direct",
            sw=s.sw_hz,
            obs=s.obs_mhz,
            car=s.carrier_ppm * s.obs_mhz,
            label="1H",
            time=False,
            freq=True,
        )
        # nmrglue stores descending ppm; 8000 points is no multiple of 16 (denoise pads and crops)
        ng.pipe.write(
            str(tmp_path / f"{k}.ft"), ng.pipe.create_dic(udic), y[::-1][:8000].astype(np.float32)
        )
    got = read_series(sorted(tmp_path.glob("*.ft")))
    assert got.spectra.shape == (3, 8000) and np.all(np.diff(got.ppm) > 0)
    assert np.allclose(
        got.spectra[0], s.spectra[0][::-1][:8000][::-1], atol=1e-3 * np.abs(s.spectra[0]).max()
    )
    r = denoise_series(got, tiny_model, progress=False)
    assert r.denoised.shape == (8000,) and np.isfinite(r.denoised).all()
    write_pipe(raw, tmp_path / "raw.fid")
    with pytest.raises(ValueError, match="give one kind"):
        read_series([*sorted(tmp_path.glob("*.ft")), tmp_path / "raw.fid"])


def test_pooled_noise_seeds_are_each_seed_s_draws_within_their_fid(raw, tiny_model):
    from lib.nmr.realdata import real_rows, real_rows_seeds

    net = load_denoiser(tiny_model)
    kw = dict(snrs=[10.0], n_val=1, n_test=2, ft=None, progress=False)
    one = [real_rows(net, [raw, raw], seed=s, **kw) for s in (0, 1)]
    rows, groups, knobs = real_rows_seeds(net, [raw, raw], seeds=[0, 1], **kw)
    assert rows[10.0]["unet"] == one[0][0][10.0]["unet"] + one[1][0][10.0]["unet"]
    assert groups[10.0].tolist() == [0, 0, 1, 1] * 2  # the FID stays the bootstrap's group
    assert len(knobs) == 2 * len(one[0][2])  # knobs of every seed kept apart
    # another seed is another noise draw
    assert rows[10.0]["input"][0]["se_whole_in"] != rows[10.0]["input"][4]["se_whole_in"]


def test_real_goal_support_resamples_fids_then_draws():
    from lib.nmr.metrics import spectrum_metrics
    from lib.nmr.realdata import grouped_resamples, real_goal_support

    groups = np.repeat([0, 1, 2], 4)
    idx = grouped_resamples(groups, 50, np.random.default_rng(0))
    assert idx.shape == (50, 12)
    # each resample draws whole FIDs: within a block of 4, all indices share one FID
    assert all(len(set(groups[b])) == 1 for row in idx for b in row.reshape(3, 4))
    x_axis = np.arange(4096)
    truth = sum(
        h / (1 + ((x_axis - c) / 3.0) ** 2) for c, h in ((900, 1.0), (2100, 0.6), (3000, 0.4))
    )
    rng = np.random.default_rng(2)
    xs = [truth + rng.normal(0, 0.05, 4096) for _ in groups]
    by = {"input": [spectrum_metrics(x, x, truth, 0.001) for x in xs]}
    for m, shrink in (
        ("unet", 0.15),
        ("savgol", 0.6),
        ("wavelet", 0.7),
        ("exp_lb", 0.8),
        ("cadzow", 0.85),
    ):
        by[m] = [spectrum_metrics(truth + shrink * (x - truth), x, truth, 0.001) for x in xs]
    sup = real_goal_support({10.0: by}, {10.0: groups}, n_boot=100)
    row = sup.loc[(10.0, "unet")]
    assert (
        row["support peak>=1.5x_best"] == 1.0
        and row["support whole>=best"] == 1.0
        and row["never_worse"]
    )
    by["unet"] = by["savgol"]  # no better than the best classical: the 1.5x goal never holds
    assert (
        real_goal_support({10.0: by}, {10.0: groups}, n_boot=100).loc[
            (10.0, "unet"), "support peak>=1.5x_best"
        ]
        == 0
    )


def test_fine_tuning_needs_acquisitions_cleaner_than_the_input(raw, tiny_model):
    """Equal-SNR runs leave nothing to lift the inputs with: skipped, the given model's output kept."""
    from lib.nmr.series import with_noise

    rng = np.random.default_rng(7)
    base = np.std(replicate_fids(raw, 20.0, 2.0, 2, seed=0)[0].fid - raw.fid)  # SNR 20
    runs = [with_noise(raw, base / np.sqrt(2), rng, f"run{k}") for k in range(4)]
    s = series_from_fids(runs)
    assert np.allclose(s.snr, s.snr[0], rtol=0.2)  # four runs of one sample, same number of scans
    with pytest.warns(UserWarning, match="fine-tuning skipped"):
        r = denoise_series(s, tiny_model, fine_tune_on=True, ft=FineTune(steps=10), progress=False)
    assert "unet fine-tuned" not in r.scores.index and r.info["output"] == "unet"
    assert r.info["reference"] == "co-add of acquisitions [1, 2, 3]"
    # by default (not asked for) the same skip is recorded and printed, not warned of
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = denoise_series(s, tiny_model, ft=FineTune(steps=10), progress=False)
    assert not any("fine-tuning skipped" in str(w.message) for w in caught)
    assert "about as noisy" in r.info["fine_tune"]["skipped"] and r.info["output"] == "unet"
    # one run made noisy (SNR 20), three cleaner ones (SNR 100): the inputs get lifted, it trains
    clean = [with_noise(raw, base / np.sqrt(2) / 5, rng, f"clean{k}") for k in range(3)]
    s = series_from_fids([runs[0], *clean])
    r = denoise_series(s, tiny_model, fine_tune_on=True, ft=FineTune(steps=10), progress=False)
    assert "unet fine-tuned" in r.scores.index and np.isfinite(r.denoised).all()


NMRPY = DATA / "nmrpy"
RUNS_31P = [NMRPY / "bruker2" / str(k) for k in (14, 17, 20, 23)]  # one reaction, ~40 min apart


def test_a_time_course_is_not_taken_for_replicates(tiny_model):
    """Four 31P runs of a reaction (measured, 600 MHz): their lines change between runs."""
    s = read_series(RUNS_31P)
    with pytest.warns(UserWarning, match="not repeated measurements"):
        r = denoise_series(s, tiny_model, progress=False)
    assert max(r.info["replicate_excess"]) > 1.0
    # fine-tuning would learn another spectrum and be judged against one: skipped
    with pytest.warns(
        UserWarning, match="fine-tuning, which would learn that difference, is skipped"
    ):
        r = denoise_series(s, tiny_model, fine_tune_on=True, progress=False)
    assert r.info["fine_tune"]["skipped"].startswith("not replicates")
    assert r.info["output"] == "unet" and "unet fine-tuned" not in r.outputs
    # four noise draws of one of those runs are replicates: no warning
    runs = replicate_fids(read_fid(RUNS_31P[0]), 10.0, 2.0, 4, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = denoise_series(series_from_fids(runs), tiny_model, fine_tune_on=False, progress=False)
    assert max(np.abs(r.info["replicate_excess"])) < 0.1


def test_a_fine_tune_that_scores_worse_is_not_the_output(series_dir, tiny_model, monkeypatch):
    import lib.nmr.denoiser as dn

    def wrecked(model, spectra, ft, prep, progress):  # a fine-tune that went wrong
        bad = load_denoiser(tiny_model)
        with torch.no_grad():
            bad.head.weight.mul_(1e3)
        return bad, [{"total": float("nan")}]

    monkeypatch.setattr(dn, "fine_tune", wrecked)
    s = read_series([series_dir / "series"])
    with pytest.warns(UserWarning, match="fine-tuning lowered"):
        r = denoise_series(s, tiny_model, fine_tune_on=True, progress=False)
    assert r.info["output"] == "unet" and r.info["fine_tune"]["output"] == "unet"
    shipped = denoise_series(s, tiny_model, fine_tune_on=False, progress=False)
    assert np.array_equal(r.denoised, shipped.denoised)


def test_a_perfect_output_is_a_lower_bound_not_a_number(raw):
    """Against a noisy reference, errors below its noise estimate's uncertainty are not resolved."""
    from lib.nmr.scoring import reference_scores

    rng = np.random.default_rng(0)
    truth = series_from_fids([raw]).spectra[0]
    sig = 0.05 * truth.max()
    x0 = truth + rng.normal(0, sig, truth.shape)
    ref_var = (sig / 4) ** 2
    ref = truth + rng.normal(0, np.sqrt(ref_var), truth.shape)
    t = reference_scores(
        {"input": x0, "perfect": truth}, x0, ref, ref_var, truth > 0.02 * truth.max()
    )
    assert t.loc["perfect", "time_factor_whole"] == pytest.approx(t.loc["perfect", "limit_whole"])
    assert t.loc["perfect", "limit_whole"] < 16 / 0.05 * 1.2  # input var / (5% of the reference's)


def test_replicates_of_equal_snr_are_not_moved(raw):
    """Noise draws of one measured FID have no shift between them: alignment must not invent one."""
    h, m = tallest_line(raw), len(raw.fid)
    shifts = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        draws = [with_noise(raw, h / 5.0 / np.sqrt(m), rng, f"draw{k}") for k in range(4)]
        shifts += list(prepare(series_from_fids(draws).spectra).shifts[1:])
    # one noisy acquisition as every acquisition's reference moved them by 5.7 points RMS
    assert np.sqrt(np.mean(np.square(shifts))) < 1.0


def test_scores_bound_the_factor_against_the_truth(raw):
    """A noisy reference's factors come with an interval that holds the factor against the truth."""
    from lib.nmr.scoring import reference_scores

    rng = np.random.default_rng(1)
    truth = series_from_fids([raw]).spectra[0]
    sig = 0.05 * truth.max()
    x0, y = (truth + rng.normal(0, s, truth.shape) for s in (sig, sig / 3))  # factor 9
    ref = truth + rng.normal(0, sig / np.sqrt(3), truth.shape)  # three held-out acquisitions
    region = truth > 0.02 * truth.max()
    t = reference_scores({"input": x0, "out": y}, x0, ref, sig**2 / 3, region).loc["out"]
    for part in ("peak", "whole"):
        assert t[f"{part}_p5"] <= t[f"time_factor_{part}"] <= t[f"{part}_p95"]
        assert t[f"{part}_p5"] < 9 < t[f"{part}_p95"]
    assert t["whole_p95"] / t["whole_p5"] < t["peak_p95"] / t["peak_p5"]  # more points, narrower


def test_zero_filling_beyond_twice_the_fid_is_warned_of(raw):
    n = 1 << int(np.ceil(np.log2(len(raw.fid))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        series_from_fids([raw], n)  # the default: at most 2x
    with pytest.warns(UserWarning, match=r"zero-fills the 8120-point FIDs 4.0x: beyond 2x"):
        series_from_fids([raw], 4 * n)


def test_an_output_scored_clearly_worse_than_its_input_is_replaced_by_the_input(raw):
    """Never worse: where the held-out scores put the output clearly below the input, the input
    comes back. Shown with the shipped model at SNR 1e4, far above the 4-25 it was trained on,
    and its blend toward the input switched off (as for a model whose card records no range)."""
    net, _ = as_model(None)
    net.snr_top = None
    s = series_from_fids(replicate_fids(raw, 1e4, 2.0, 4, seed=7))
    with pytest.warns(UserWarning, match="scores clearly below the input.*input is kept unchanged"):
        r = call_denoise(s, net, fine_tune_on=False, progress=False)
    assert r.info["output"] == "input" and "unet" in r.info["kept_input"]
    assert np.array_equal(r.denoised, r.input)
    assert r.scores.loc["unet", "peak_p95"] < 1  # the rule's reason, kept beside the other rows
    assert "blend" not in r.info


def test_the_shipped_model_blends_toward_the_input_beyond_its_training_snr(raw):
    """At SNR 1e4 the shipped model's own output is no worse than the input on the lines and the
    whole spectrum (it weighs about 1e-3 there); within its range it is left alone."""
    s = series_from_fids(replicate_fids(raw, 1e4, 2.0, 4, seed=7))
    r = call_denoise(s, fine_tune_on=False, progress=False)
    assert r.info["output"] == "unet" and "kept_input" not in r.info
    assert r.info["blend"]["trained_snr_top"] == 25.0 and r.info["blend"]["unet_weight"] < 0.01
    assert r.scores.loc["unet", "peak_p5"] > 0.95 and r.scores.loc["unet", "whole_p5"] > 0.95
    low = series_from_fids(replicate_fids(raw, 10, 2.0, 4, seed=7))
    net, _ = as_model(None)
    x = low.spectra[0]
    assert np.array_equal(denoise(net, x), denoise(net, x, blend=False))
