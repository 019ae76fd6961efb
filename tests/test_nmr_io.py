"""Reading real spectra with nmrglue: Bruker, JCAMP-DX, and NMRPipe/Varian written from real data."""

from __future__ import annotations

import warnings
from pathlib import Path

import nmrglue as ng
import numpy as np
import pytest

from lib.nmr.io import read_fid, read_spectrum

DATA = Path(__file__).parent / "data" / "nmr"
BRUKER = DATA / "bruker" / "bruker1" / "1"
JCAMP = DATA / "jcamp" / "140-67-0_1h.fid.dx"


def test_jcamp_fid_gives_known_spectrum():
    y, ppm = read_spectrum(JCAMP, n_points=8192)
    assert y.shape == ppm.shape == (8192,)
    assert np.all(np.diff(ppm) > 0)
    # 4-allylanisole in CDCl3: the methoxy singlet at 3.8 ppm is the tallest line
    assert ppm[np.argmax(y)] == pytest.approx(3.84, abs=0.03)


def test_bruker_directory_reads_and_phases():
    raw = read_fid(BRUKER)
    assert raw.obs_mhz == pytest.approx(400.13, abs=0.01) and raw.fid.ndim == 1
    y, _ppm = read_spectrum(BRUKER, n_points=8192)
    # after automatic phasing the tallest line is positive (absorption)
    assert y.max() > 5 * abs(y.min())


def _converted(tmp_path: Path):
    dic, data = ng.bruker.read(str(BRUKER))
    c = ng.convert.converter()
    c.from_bruker(dic, data, ng.bruker.guess_udic(dic, data))
    return c


def test_nmrpipe_file_from_real_data(tmp_path):
    c = _converted(tmp_path)
    out = tmp_path / "test.fid"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ng.pipe.write(str(out), *c.to_pipe(), overwrite=True)
    y, _ppm = read_spectrum(out, n_points=4096)
    assert y.shape == (4096,) and np.isfinite(y).all()


def test_varian_directory_from_real_data(tmp_path):
    c = _converted(tmp_path)
    out = tmp_path / "test.fid"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ng.varian.write(str(out), *c.to_varian(), overwrite=True)
    raw = read_fid(out)
    assert raw.fid.ndim == 1 and len(raw.fid) > 1000


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.fid"
    bad.write_bytes(b"not an nmr file at all")
    with pytest.raises(ValueError, match="nmrglue could not read .*broken.fid"):
        read_fid(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_fid(tmp_path / "missing.dx")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValueError, match="acqus"):
        read_fid(tmp_path / "emptydir")
