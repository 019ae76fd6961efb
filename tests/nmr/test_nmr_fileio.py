"""Reading real spectra with nmrglue: Bruker, JCAMP-DX, and NMRPipe/Varian written from real data."""

from __future__ import annotations

import warnings
from pathlib import Path

import nmrglue as ng
import numpy as np
import pytest

from lib.nmr.fileio import AxisError, read_fid, read_fids, read_spectrum
from lib.nmr.series import read_series

DATA = Path(__file__).parents[1] / "data" / "nmr"
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


def test_varian_procpar_without_spectral_width_is_a_clear_error(tmp_path):
    c = _converted(tmp_path)  # nmrglue's converter writes a procpar with np alone
    out = tmp_path / "test.fid"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ng.varian.write(str(out), *c.to_varian(), overwrite=True)
    with pytest.raises(AxisError, match="procpar has no usable 'sw'"):
        read_fid(out)


def test_varian_arrayed_experiment_is_read_row_by_row():
    """A measured Varian 31P array (161.9 MHz; NMRPy's test data, first 4 of 24 FIDs)."""
    path = Path(__file__).parents[1] / "data" / "nmr" / "nmrpy" / "varian_31p_array4.fid"
    with pytest.raises(ValueError, match="arrayed experiment is read by read_fids"):
        read_fid(path)
    raws = read_fids(path)
    assert len(raws) == 4 and all(r.fid.shape == (15542,) for r in raws)
    r = raws[0]
    # procpar: sw 9713.45 Hz, sfrq 161.8947806 MHz, referenced (reffrq) near the carrier, tn P31
    assert r.sw_hz == pytest.approx(9713.45313259) and r.obs_mhz == pytest.approx(161.8947806)
    assert abs(r.carrier_ppm) < 0.01 and r.meta["nucleus"] == "31P"
    s = read_series([path])
    assert len(s) == 4 and s.ppm[0] == pytest.approx(-30.0, abs=0.1)
    assert sorted(s.sources) == [f"{path}[{i}]" for i in range(4)]


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


def test_nmrpipe_fid_with_bruker_group_delay(tmp_path):
    """bruk2pipe keeps the digital filter and records its delay (FDDMXVAL) for nmrPipe's FT."""
    from lib.nmr.series import series_from_fids

    dic, data = ng.bruker.read(str(BRUKER))
    pdic = ng.pipe.create_dic(ng.bruker.guess_udic(dic, data))
    clean = series_from_fids([read_fid(BRUKER)]).spectra[0]  # nmrglue's own filter removal

    def spectrum(tmp, flag):
        pdic.update(FDDMXVAL=72.125, FDDMXFLAG=flag)  # DECIM 32, DSPFVS 12
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ng.pipe.write(str(tmp), pdic, np.conj(data).astype(np.complex64), overwrite=True)
        return series_from_fids([read_fid(tmp)]).spectra[0]

    fixed = spectrum(tmp_path / "a.fid", 0.0)
    ignored = spectrum(tmp_path / "b.fid", -1.0)  # the header says: leave the filter in
    assert np.corrcoef(clean, fixed)[0, 1] > 0.95
    assert np.corrcoef(clean, ignored)[0, 1] < 0.9
