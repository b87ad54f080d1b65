"""``mricurate demo``: the whole pipeline, as far as it exists, on a generated sample.

It writes a messy PACS-like export with PHI planted in headers, paths and
private elements, de-identifies it, checks that no planted value reached the
release and says where to look.  It grows as the pipeline does.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.dicom.profile import load_profile
from pipeline.dicom.run import deidentify_tree
from pipeline.keys import generate_key, load_key, write_key
from pipeline.pixels.ocr import TesseractEngine
from pipeline.pixels.scan import ScanStatus, scan_tree, write_findings
from pipeline.private_store import PrivateStore
from pipeline.samples.mr import write_sample_tree


def leaked_values(release: Path, values: list[str]) -> list[str]:
    """Planted values found in any byte or path of ``release`` (should be none)."""
    needles = {v.encode("utf-8").upper() for v in values if len(v) >= 4}
    needles |= {v.encode("latin-1", "ignore").upper() for v in values if len(v) >= 4}
    found: set[str] = set()
    for path in release.rglob("*"):
        rel = str(path.relative_to(release)).encode().upper()
        data = path.read_bytes().upper() if path.is_file() else b""
        found |= {n.decode("latin-1") for n in needles if n and (n in data or n in rel)}
    return sorted(found)


def run_demo(root: Path, *, subjects: int = 3, jobs: int = 1) -> int:
    """Generate, de-identify, verify and report; return the number of leaks (0)."""
    root.mkdir(parents=True, exist_ok=True)
    incoming = root / "incoming"
    release = root / "release"
    private_dir = root / "private"
    key_path = private_dir / "site.key"
    private_dir.mkdir(exist_ok=True, mode=0o700)
    if not key_path.exists():
        write_key(key_path, generate_key())
    key = load_key(key_path)
    print(f"1. generating a sample of {subjects} subjects with planted PHI in {incoming}")
    people = write_sample_tree(incoming, n_subjects=subjects)
    print("2. de-identifying with profile 'research'")
    profile = load_profile("research")
    summary = deidentify_tree(incoming, release, key, profile, PrivateStore(private_dir), jobs=jobs)
    for outcome, count in sorted(summary.outcomes.items()):
        print(f"     {outcome:<12} {count}")
    for reason, keys in sorted(summary.reasons.items()):
        print(f"     - {reason}: {len(keys)}")
    print("3. scanning the pixels of the input for burned-in text (Tesseract)")
    findings = scan_tree(incoming, TesseractEngine(), jobs=jobs)
    write_findings(findings, private_dir / "findings.json")
    flagged = [f for f in findings if f.status is ScanStatus.FLAGGED]
    print(f"     {len(flagged)} of {len(findings)} file(s) flagged; findings (PHI) in private/")
    planted = [v for person in people for v in person.phi.values()]
    leaks = leaked_values(release, planted)
    print(f"4. leak check: {len(planted)} planted values, {len(leaks)} found in the release")
    print()
    print(f"Look at the release:       {release}")
    print(f"  e.g. dcmdump $(find {release} -name '*.dcm' | head -1)")
    print(f"Private (key, link table, quarantine with reasons): {private_dir}")
    print(f"The input with its PHI:    {incoming}")
    return len(leaks)
