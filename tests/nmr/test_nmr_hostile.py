"""Hostile input to the NMR denoiser: every file is refused with a message naming it, the problem
and the fix, before it can make the program allocate without bound, leave its folder, or fail
with a raw Python error (docs/safety.md)."""

from __future__ import annotations

import json
import pickle
import shutil
import tracemalloc
import warnings
from pathlib import Path

import nmrglue as ng
import numpy as np
import pytest
import torch

from lib.core.io import file_digest
from lib.nmr import fileio, jcamp
from lib.nmr.__main__ import main as nmr_cli
from lib.nmr.fileio import MAX_POINTS, AxisError, InputError, RawFID, read_fid, write_pipe
from lib.nmr.jcamp import JcampError
from lib.nmr.modelfile import card_path, load_verified, save_model
from lib.nmr.scoring import block_means, block_resamples, reference_scores
from lib.nmr.series import read_series, series_from_arrays
from lib.nmr.unet import UNet1D, UNetConfig

DATA = Path(__file__).parents[1] / "data" / "nmr"
BRUKER = DATA / "bruker" / "bruker1" / "1"
JCAMP = DATA / "jcamp" / "140-67-0_1h.fid.dx"
VARIAN = DATA / "nmrpy" / "varian_31p_array4.fid"


def _no_read(monkeypatch, *targets) -> None:
    """Make nmrglue's data readers fail loudly: a refusal must come before them."""
    for module, name in targets:

        def boom(*a, _n=name, **k):
            raise AssertionError(f"{_n} was called: the data were read before the check")

        monkeypatch.setattr(module, name, boom)


def _jcamp(tmp_path: Path, real: list[str], imag: list[str], header: str = "") -> Path:
    """A small NTUPLES JCAMP-DX FID with the given data lines."""
    text = "\n".join(
        [
            "##TITLE= hostile",
            "##JCAMPDX= 5.01",
            "##DATA TYPE= NMR FID",
            "##DATA CLASS= NTUPLES",
            "##.OBSERVE FREQUENCY= 400.13",
            "##$SWH= 5000",
            "##$SFO1= 400.13",
            "##$O1= 2000",
            *([header] if header else []),
            "##NTUPLES= NMR FID",
            "##VAR_NAME= TIME, FID/REAL, FID/IMAG",
            "##SYMBOL= X, R, I",
            "##FACTOR= 1, 1, 1",
            "##PAGE= N=1",
            "##DATA TABLE= (X++(R..R)), XYDATA",
            *real,
            "##PAGE= N=2",
            "##DATA TABLE= (X++(I..I)), XYDATA",
            *imag,
            "##END NTUPLES= NMR FID",
            "##END=",
        ]
    )
    path = tmp_path / "hostile.dx"
    path.write_text(text + "\n")
    return path


def _pipe(tmp_path: Path, name: str, **header) -> Path:
    """The Bruker fixture as an NMRPipe FID (as bruk2pipe writes it), with header values changed."""
    dic, data = ng.bruker.read(str(BRUKER))
    pdic = ng.pipe.create_dic(ng.bruker.guess_udic(dic, data))
    pdic.update(header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ng.pipe.write(str(tmp_path / name), pdic, np.conj(data).astype(np.complex64))
    return tmp_path / name


def _bruker(tmp_path: Path, **acqus) -> Path:
    """A copy of the Bruker fixture with acqus values set (appended ones when new)."""
    exp = tmp_path / "1"
    shutil.copytree(BRUKER, exp)
    lines = (exp / "acqus").read_text().splitlines()
    for key, value in acqus.items():
        lines = [ln for ln in lines if not ln.startswith(f"##${key}=")]
        lines.insert(-1, f"##${key}= {value}")  # before ##END=
    (exp / "acqus").write_text("\n".join(lines) + "\n")
    return exp


# 1. the point limit, from the headers, before the data


def test_the_point_limit_is_one_documented_constant():
    assert MAX_POINTS == 2**20
    doc = (Path(__file__).parents[2] / "docs" / "safety.md").read_text()
    assert "2**20" in doc and "--max-points" in doc


def test_bruker_td_over_the_limit_is_refused_before_the_fid_is_read(tmp_path, monkeypatch):
    _no_read(monkeypatch, (ng.bruker, "read"))
    with pytest.raises(
        InputError, match=r"acqus: TD declares 16384 complex points.*max_points=1000"
    ):
        read_fid(BRUKER, max_points=1000)
    with pytest.raises(InputError, match=r"TD declares 1073741824 .*--max-points"):
        read_fid(_bruker(tmp_path, TD=2**31))


def test_varian_np_over_the_limit_is_refused_before_the_fid_is_read(tmp_path, monkeypatch):
    _no_read(monkeypatch, (ng.varian, "read"), (ng.varian, "read_fid"))
    with pytest.raises(InputError, match=r"procpar: np/2 declares 15542 .*max_points=1000"):
        read_fid(VARIAN, max_points=1000)
    # a 32-byte file header that claims 2**30 blocks: nmrglue would allocate them all first
    exp = tmp_path / "v.fid"
    shutil.copytree(VARIAN, exp)
    raw = bytearray((exp / "fid").read_bytes())
    raw[0:4] = (2**30).to_bytes(4, "big")
    (exp / "fid").write_bytes(raw)
    with pytest.raises(InputError, match=r"v.fid/fid: its header declares 1073741824 blocks"):
        read_fid(exp)


def test_nmrpipe_fdsize_over_the_limit_is_refused_before_the_data_are_read(tmp_path, monkeypatch):
    path = _pipe(tmp_path, "a.fid")
    big = _pipe(tmp_path, "big.fid", FDSIZE=float(2**24))
    _no_read(monkeypatch, (ng.pipe, "read"))
    with pytest.raises(InputError, match=r"a.fid: FDSIZE declares 16384 .*max_points=1000"):
        read_fid(path, max_points=1000)
    with pytest.raises(InputError, match=r"big.fid: FDSIZE declares 16777216"):
        read_fid(big)


def test_jcamp_declared_sizes_over_the_limit_are_refused_before_parsing(monkeypatch):
    _no_read(monkeypatch, (ng.jcampdx, "read"))
    with pytest.raises(JcampError, match=r"##\$TD= declares 8192 complex points.*max_points=1000"):
        read_fid(JCAMP, max_points=1000)


def test_spinsolve_data_file_over_the_limit_is_refused(tmp_path, monkeypatch):
    exp = tmp_path / "spin"
    exp.mkdir()
    (exp / "acqu.par").write_text("bandwidth = 5\nb1Freq = 43.5\n")
    with (exp / "data.1d").open("wb") as f:
        f.truncate(12 * 1000 + 1024)  # sparse: nothing is written
    _no_read(monkeypatch, (ng.spinsolve, "read"))
    with pytest.raises(InputError, match=r"data.1d: 13024 bytes, more than .*max_points"):
        read_fid(exp, max_points=1000)


def test_cli_takes_the_limit_and_refuses_nonsense(tmp_path):
    out = str(tmp_path / "o")
    with pytest.raises(SystemExit, match=r"error: .*max_points=1000"):
        nmr_cli(["denoise", str(JCAMP), "--out", out, "--max-points", "1000"])
    with pytest.raises(SystemExit) as e:
        nmr_cli(["denoise", str(JCAMP), "--out", out, "--max-points", "0"])
    assert e.value.code == 2  # argparse's usage error, before anything is read


# 1. JCAMP-DX compressed lines: bounded while parsing


@pytest.mark.parametrize(
    ("header", "line", "bound"),
    [
        ("", "0AU0000000", "1048576 points"),  # DUP 30 million, no declared size: the limit
        ("##VAR_DIM= 8, 8, 8", "0AS99", "24 points"),  # DUP 199 against 8 declared (+ 16)
        ("", "0AS" + "9" * 5000, "1048576 points"),  # more digits than int() takes
    ],
)
def test_jcamp_dup_counts_are_bounded_while_scanning(tmp_path, monkeypatch, header, line, bound):
    path = _jcamp(tmp_path, [line], ["0A"], header)
    _no_read(monkeypatch, (ng.jcampdx, "read"))
    with pytest.raises(JcampError, match=rf"hostile.dx, line \d+: .*more than {bound}"):
        read_fid(path)


def test_jcamp_many_small_repeats_stop_at_the_line_that_passes_the_limit(tmp_path, monkeypatch):
    path = _jcamp(tmp_path, ["0AS000"] * 50, ["0A"])  # 50 lines of 1 + 999 repeats
    first = path.read_text().splitlines().index("0AS000") + 1
    _no_read(monkeypatch, (ng.jcampdx, "read"))
    with pytest.raises(JcampError, match=rf"line {first + 20}: .*more than 20000 points"):
        jcamp.scan(path, 20000)  # the 21st line passes 20000


def test_jcamp_scan_counts_what_nmrglue_reads():
    for path in sorted((DATA / "jcamp").glob("*.dx")):
        jcamp.scan(path, MAX_POINTS)  # the committed fixtures pass at their declared sizes
        dic, fid = jcamp.read_jcamp(path, MAX_POINTS)
        assert len(fid) == int(dic["$TD"][0]) // 2


def test_jcamp_file_larger_than_the_limit_allows_is_refused_unread(tmp_path):
    path = tmp_path / "huge.dx"
    with path.open("wb") as f:
        f.truncate(jcamp.HEADER_BYTES + 2 * jcamp.BYTES_PER_VALUE * 1000 + 1)  # sparse
    with pytest.raises(JcampError, match=r"huge.dx: .*MiB, more than a JCAMP-DX FID"):
        read_fid(path, max_points=1000)


@pytest.mark.parametrize("token", ["nan", "inf", "-Infinity", "NaN", "?"])
def test_jcamp_non_finite_values_are_errors_not_dropped(tmp_path, token):
    path = _jcamp(
        tmp_path, ["0 1.0 2.0 3.0 4.0", f"4 5.0 {token} 7.0 8.0"], ["0 1 2 3 4", "4 5 6 7 8"]
    )
    with pytest.raises(JcampError, match=r"hostile.dx, line \d+: .*is not a finite number"):
        read_fid(path)


def test_jcamp_garbage_in_data_lines_is_an_error(tmp_path):
    path = _jcamp(tmp_path, ["0 1.0 2.0 abc 4.0"], ["0 1 2 3"])
    with pytest.raises(JcampError, match=r"'abc' is not a number"):
        read_fid(path)
    path = _jcamp(tmp_path, ["0A1B2#"], ["0A1B2C3"])
    with pytest.raises(JcampError, match=r"'#' is no compressed \(ASDF\) digit"):
        read_fid(path)
    path = _jcamp(tmp_path, ["A1B2"], ["0A1B2"])
    with pytest.raises(JcampError, match=r"must start with its X value"):
        read_fid(path)


# 2. scoring memory


def test_block_means_are_the_means_over_block_resamples():
    rng = np.random.default_rng(0)
    for n in (5, 17, 1000, 4099):
        v = rng.normal(size=(3, n)) ** 2
        want = np.stack([x[block_resamples(n, 16, 50, seed=2)].mean(1) for x in v])
        assert np.array_equal(block_means(v, 16, 50, seed=2, chunk=2 * n), want)


def test_scoring_a_million_points_stays_within_a_few_hundred_mb():
    n = 2**20
    rng = np.random.default_rng(0)
    truth = np.zeros(n)
    truth[n // 3 : n // 3 + 40] = 30.0
    x0, y, ref = (truth + rng.normal(0, s, n) for s in (1.0, 0.3, 0.5))
    tracemalloc.start()
    try:
        t = reference_scores({"input": x0, "out": y}, x0, ref, 0.25, truth > 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # was 3.1 GiB of indices
    assert t.loc["out", "whole_p5"] < t.loc["out", "time_factor_whole"] < t.loc["out", "whole_p95"]


# 3. the output folder, before any work


def test_out_folder_is_checked_before_anything_is_read(tmp_path, monkeypatch):
    import lib.nmr.__main__ as cli

    def boom(*a, **k):
        raise AssertionError("the series was read before --out was checked")

    monkeypatch.setattr(cli, "read_series", boom)
    monkeypatch.setattr(cli, "read_fid", boom)
    a_file = tmp_path / "out.txt"
    a_file.write_text("mine")
    with pytest.raises(SystemExit, match=r"--out .*out.txt is a file, not a folder"):
        nmr_cli(["denoise", str(JCAMP), "--out", str(a_file)])
    with pytest.raises(SystemExit, match=r"--out .*out.txt/sub: .*out.txt is a file"):
        nmr_cli(["denoise", str(JCAMP), "--out", str(a_file / "sub")])
    with pytest.raises(SystemExit, match=r"out.txt is a file, not a folder"):
        nmr_cli(["make-series", str(JCAMP), "--out", str(a_file)])
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "denoised.csv").write_text("mine")
    with pytest.raises(SystemExit, match=r"already holds \['denoised.csv'\].*--overwrite"):
        nmr_cli(["denoise", str(JCAMP), "--out", str(earlier)])
    (earlier / "acq0.fid").write_text("mine")
    with pytest.raises(SystemExit, match=r"already holds \['acq0.fid'\].*--overwrite"):
        nmr_cli(["make-series", str(JCAMP), "--out", str(earlier)])
    assert a_file.read_text() == "mine" and (earlier / "acq0.fid").read_text() == "mine"


# 4. NMRPipe header values


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e12, -5.0])
def test_nmrpipe_absurd_group_delay_is_refused_naming_fddmxval(tmp_path, value):
    path = _pipe(tmp_path, "g.fid", FDDMXVAL=value, FDDMXFLAG=0.0)
    with pytest.raises(InputError, match=r"g.fid: .*FDDMXVAL=.*fix FDDMXVAL"):
        read_fid(path)


@pytest.mark.parametrize("value", ["inf", "100000"])
def test_bruker_absurd_group_delay_is_refused_naming_grpdly(tmp_path, value):
    with pytest.raises(InputError, match=r"acqus: group delay GRPDLY=.*fix GRPDLY"):
        read_fid(_bruker(tmp_path, GRPDLY=value))


def test_nmrpipe_zero_frequency_names_the_nmrpipe_field(tmp_path):
    path = _pipe(tmp_path, "obs0.fid", FDF2OBS=0.0)
    with pytest.raises(
        AxisError, match=r"obs0.fid: spectrometer frequency is 0.0 \(FDF2OBS\)"
    ) as e:
        read_fid(path)
    assert "SFO1" not in str(e.value) and "NMRPipe header" in str(e.value)


# 5. a pure-DC series


def test_pure_dc_series_is_a_clear_error_naming_the_files(tmp_path):
    for k in range(4):
        dc = RawFID(np.full(1024, 5.0 + 1j) * (k + 1), 5000.0, 400.0, 4.7, f"dc{k}")
        write_pipe(dc, tmp_path / "s" / f"acq{k}.fid")
    with pytest.raises(InputError, match=r"acq0.fid: every point of the FID is .*pure DC offset"):
        read_series([tmp_path / "s"])
    with pytest.raises(SystemExit, match=r"error: .*acq0.fid: .*pure DC") as e:
        nmr_cli(["denoise", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--no-fine-tune"])
    assert "NaN" not in str(e.value)
    flat = np.ones((3, 1024), complex) * np.arange(1, 4)[:, None]
    with pytest.raises(InputError, match=r"no lines and no noise in array\[0\], array\[1\]"):
        series_from_arrays(flat, sw_hz=5000.0, obs_mhz=400.0)


# 6. model cards and weights


@pytest.fixture()
def model(tmp_path) -> Path:
    return save_model(UNet1D(UNetConfig(base=8)), tmp_path / "m.pt", {"command": "test"})


@pytest.mark.parametrize(
    ("field", "value", "want"),
    [
        ("base", -1e12, "a whole number from 1 to 128"),
        ("base", "64", "a whole number from 1 to 128"),
        ("base", 4096, "a whole number from 1 to 128"),
        ("kernel", 8, "an odd whole number"),
        ("se", "yes", "true or false"),
        ("max_correction", float("inf"), "a number from 0 to 1000"),
    ],
)
def test_card_fields_of_wrong_type_or_range_are_refused(model, field, value, want):
    card = json.loads(card_path(model).read_text())
    card["net"][field] = value
    card_path(model).write_text(json.dumps(card))
    with pytest.raises(ValueError, match=rf"m.json: field net.{field} is .*must be {want}"):
        load_verified(model)


def test_card_whose_widths_groups_cannot_divide_is_refused(model):
    card = json.loads(card_path(model).read_text())
    card["net"]["groups"] = 3
    card_path(model).write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"m.json: no network can be built"):
        load_verified(model)


class _Payload:
    def __reduce__(self):
        return (Path.write_text, (Path("/nonexistent-dir/ran"), "code ran"))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickle_in_place_of_weights_is_refused_without_the_unsafe_hint(model, how):
    payload = {"head.weight": _Payload()}
    if how == "pickle":
        model.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, model)
    card = json.loads(card_path(model).read_text())
    card["sha256"] = file_digest(model, "sha256")  # the card made for the swapped file too
    card_path(model).write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"m.pt: not a model file this workbook wrote") as e:
        load_verified(model)
    assert "weights_only" not in str(e.value) and e.value.__cause__ is None
    assert e.value.__suppress_context__


def test_weights_file_far_larger_than_the_card_needs_is_refused_unread(model, monkeypatch):
    with model.open("ab") as f:
        f.truncate(model.stat().st_size + 64 * 2**20)
    card = json.loads(card_path(model).read_text())
    card["sha256"] = file_digest(model, "sha256")
    card_path(model).write_text(json.dumps(card))
    _no_read(monkeypatch, (torch, "load"))
    with pytest.raises(ValueError, match=r"m.pt: .*bytes, far more than the weights"):
        load_verified(model)


# paths that would leave their folder


def test_links_out_of_an_experiment_folder_are_refused(tmp_path):
    exp = tmp_path / "exp" / "1"
    shutil.copytree(BRUKER, exp)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (exp / "fid").rename(outside / "fid")
    (exp / "fid").symlink_to(outside / "fid")
    with pytest.raises(InputError, match=r"1/fid leads out of the experiment folder"):
        read_fid(exp)
    (exp / "fid").unlink()
    # without its fid nmrglue would take one from two folders up
    shutil.copy(outside / "fid", tmp_path / "fid")
    with pytest.raises(InputError, match=r"has an acqus but no fid or ser file"):
        read_fid(exp)
    series = tmp_path / "series"
    series.mkdir()
    (series / "2").symlink_to(BRUKER, target_is_directory=True)
    with pytest.raises(InputError, match=r"series/2 is a link leading out of"):
        read_series([series])


def test_refusals_name_their_file_and_pass_through_nmrglue_wrapping(tmp_path):
    path = _jcamp(tmp_path, ["0AU0000000"], ["0A"])
    with pytest.raises(ValueError) as e:
        read_fid(path)
    assert "nmrglue could not read" not in str(e.value) and str(path) in str(e.value)
    assert issubclass(JcampError, ValueError) and issubclass(InputError, ValueError)
    assert fileio.MAX_POINTS == MAX_POINTS
