"""``mricurate``: the command line.

`deid`, `keygen` and `rules` call :mod:`pipeline` directly (fast, no
orchestrator start-up).  Messages refer to inputs by opaque keys; PHI is only
ever printed by the explicit, interactive ``deid --dry-run``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from pipeline.errors import CurationError
from pipeline.keys import default_private_dir, generate_key, load_key, write_key
from pipeline.private_store import PrivateStore
from pipeline.read.content import opaque_key


def _private_store(args: argparse.Namespace, key_path: Path) -> PrivateStore:
    """``--private-dir``, or ``private/`` beside the key."""
    return PrivateStore(
        Path(args.private_dir) if args.private_dir else default_private_dir(key_path)
    )


def _opaque_keys(keys: list[str]) -> str:
    """At most five opaque input keys (never paths: they can hold names)."""
    return ", ".join(keys[:5]) + (f", … {len(keys) - 5} more" if len(keys) > 5 else "")


def _print_outcomes(outcomes: dict[str, int], reasons: dict[str, list[str]]) -> None:
    for outcome, number in sorted(outcomes.items()):
        print(f"  {outcome:<12} {number}")
    for reason, keys in sorted(reasons.items()):
        print(f"  - {reason}: {len(keys)} [{_opaque_keys(keys)}]")


def _cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.keyfile)
    write_key(path, generate_key())
    key = load_key(path)
    print(f"wrote a new key to {path} (mode 0600, fingerprint {key.fingerprint})")
    print("Back it up now, offline and apart from any release; see README 'The key'.")
    return 0


def _cmd_deid(args: argparse.Namespace) -> int:
    from pipeline.dicom.deidentify import explain
    from pipeline.dicom.profile import load_profile
    from pipeline.dicom.run import deidentify_tree

    key_path = Path(args.key_file)
    key = load_key(key_path)
    profile = load_profile(args.profile)
    if args.dry_run:
        source = Path(args.source)
        if not source.is_file():
            raise CurationError("--dry-run explains one file: give SOURCE as a file")
        changes = explain(source.read_bytes(), key, profile)
        print(f"# dry run, profile {profile.name}: nothing is written (shows PHI: keep private)")
        for c in changes:
            after = "(removed)" if c.after is None else repr(c.after)
            print(f"{c.path:<34} {c.keyword:<34} {c.before!r} -> {after}  [{c.action}: {c.rule}]")
        return 0
    if args.output is None:
        raise CurationError("OUTPUT is required unless --dry-run is given")
    cleaning = None
    if args.clean_pixels:
        from pipeline.pixels.blank import PixelCleaning
        from pipeline.pixels.engines import make_engine
        from pipeline.pixels.regions import load_region_rules

        # Rules are validated before any file is read; the engine is checked by the run.
        rules = load_region_rules(Path(args.pixel_rules) if args.pixel_rules else None)
        engine = make_engine(args.ocr_engine, language=args.lang)
        cleaning = PixelCleaning(engine, rules)
    private = _private_store(args, key_path)
    summary = deidentify_tree(
        Path(args.source),
        Path(args.output),
        key,
        profile,
        private,
        jobs=args.jobs,
        keep_burned_in=args.keep_burned_in,
        dicomdir=args.dicomdir,
        cleaning=cleaning,
    )
    print(f"run {summary.run_id}: profile {profile.name}, {summary.seen} file(s) seen")
    _print_outcomes(summary.outcomes, summary.reasons)
    for name, count in sorted(summary.carried.items()):
        print(f"  carried {name} from vendor private elements in {count} file(s)")
    for state, count in sorted(summary.pixels.items()):
        print(f"  pixels {state}: {count} file(s)")
    print(f"output: {Path(args.output).resolve()}")
    print(f"link table, quarantine and run record (private): {private.root}")
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    from pipeline.dicom.profile import load_profile

    if args.rules_command == "check":
        profile = load_profile(args.file)
        print(
            f"{args.file}: OK ({len(profile.all_rules())} effective rules, profile {profile.name})"
        )
        return 0
    profile = load_profile(args.profile)
    print(f"# profile {profile.name}: {profile.title}")
    if profile.meets:
        print(f"# meets: {profile.meets}")
    print(f"# files: {', '.join(p.name for p in profile.files)}; digest {profile.digest[:16]}")
    print(f"# dates: {profile.date_mode.value}, shift range {profile.date_shift_days} days")
    print(f"{'selector':<32} {'action':<10} {'decided by':<40} attribute")
    defaults = {id(rule): f"any {vr} not named" for vr, rule in profile.defaults.items()}
    for rule in sorted(profile.all_rules(), key=lambda r: r.selector.describe()):
        selector = defaults.get(id(rule), rule.selector.describe())
        print(f"{selector:<32} {rule.action.value:<10} {rule.origin:<40} {rule.name}")
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from collections import Counter

    from pipeline.pixels.engines import make_engine
    from pipeline.pixels.scan import ScanStatus, scan_tree, write_findings

    engine = make_engine(args.ocr_engine, language=args.lang)
    findings = scan_tree(Path(args.source), engine, jobs=args.jobs, prefilter=not args.no_prefilter)
    if args.json:
        write_findings(findings, Path(args.json))
    counts = Counter(f.status for f in findings)
    print(f"scanned {len(findings)} file(s) with {engine.name}")
    for status in ScanStatus:
        print(f"  {status.value:<8} {counts.get(status, 0)}")
    own = sum(any(m.kind.from_header for m in f.phi_matches) for f in findings)
    print(f"  {own} file(s) show their own header PHI in the pixels")
    skipped = sum(f.ocr_skipped_by_prefilter for f in findings)
    read = sum(f.images_scanned for f in findings)
    print(f"  images read by OCR {read}, skipped by the pre-filter {skipped}")
    for status in (ScanStatus.FLAGGED, ScanStatus.ERROR):
        # Opaque keys only: paths can hold names.
        keys = [opaque_key(f.key, f.path) for f in findings if f.status is status]
        if keys:
            print(f"  - {status.value}: [{_opaque_keys(keys)}]")
    if args.json:
        print(f"findings (hold PHI: keep them private): {Path(args.json).resolve()}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from pipeline.dicom.profile import load_profile
    from pipeline.raw.header_rules import load_header_rules
    from pipeline.raw.run import convert_tree
    from pipeline.raw.subject_lookup import load_subject_mapping

    key_path = Path(args.key_file)
    key = load_key(key_path)
    rules = load_header_rules(Path(args.header_rules) if args.header_rules else None)
    # The DICOM profile's shift range gives a subject the same shift on both sides.
    span = load_profile(args.profile).date_shift_days
    mapping = load_subject_mapping(Path(args.subjects)) if args.subjects else None
    private = _private_store(args, key_path)
    summary = convert_tree(
        Path(args.source),
        Path(args.output),
        key,
        private,
        rules,
        date_shift_days=span,
        subjects=mapping,
        fastmri=Path(args.fastmri) if args.fastmri else None,
        jobs=args.jobs,
        stall_seconds=args.stall_seconds,
    )
    print(f"run {summary.run_id}: {summary.seen} file(s) seen")
    _print_outcomes(summary.outcomes, summary.reasons)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(summary.kinds.items()))
    print(
        f"  {summary.measurements} measurement(s) ({summary.noise_measurements} noise), "
        f"{summary.acquisitions} acquisitions; inputs: {kinds or 'none'}"
    )
    for source, number in sorted(summary.subject_sources.items()):
        print(f"  subject from {source}: {number} file(s)")
    print(f"output: {Path(args.output).resolve()}")
    if args.fastmri:
        print(f"fastMRI files ({summary.fastmri_files}): {Path(args.fastmri).resolve()}")
        if summary.fastmri_skipped:
            print(
                f"  {summary.fastmri_skipped} image measurement(s) have no fastMRI layout "
                "(undersampled, non-Cartesian, ...): released as ISMRMRD only"
            )
    print(f"link table, quarantine and run record (private): {private.root}")
    return 0


def _cmd_export_fastmri(args: argparse.Namespace) -> int:
    from pipeline.raw.run import export_fastmri_tree

    written, skipped, failed = export_fastmri_tree(Path(args.source), Path(args.output))
    print(f"fastMRI files written {written}, noise or non-image measurements skipped {skipped}")
    for relpath, reason in failed:
        print(f"  - {relpath}: {reason}")
    print(f"output: {Path(args.output).resolve()}")
    return 1 if failed else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    root = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="mricurate-demo-"))
    run_demo(root, subjects=args.subjects, jobs=args.jobs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mricurate",
        description="Turn hospital MRI data into a research dataset that exposes no patient.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen", help="write a new secret key (mode 0600)")
    p.add_argument("keyfile")
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser("deid", help="de-identify every DICOM file under SOURCE into OUTPUT")
    p.add_argument("source")
    p.add_argument("output", nargs="?")
    p.add_argument("--key-file", required=True)
    p.add_argument("--profile", default="research", help="profile name or file (default research)")
    p.add_argument("--private-dir", help="link table and quarantine (default: beside the key)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--keep-burned-in",
        action="store_true",
        help="write files that may carry burned-in text instead of holding them back",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="explain one file: each element before -> after"
    )
    p.add_argument(
        "--dicomdir",
        action="store_true",
        help="lay OUTPUT out as a DICOM File-set with a new DICOMDIR (OUTPUT must be empty)",
    )
    p.add_argument(
        "--clean-pixels",
        action="store_true",
        help="scan every image for burned-in text and blank it (region rules + OCR); files "
        "whose text cannot be located or blanked stay held back",
    )
    p.add_argument(
        "--pixel-rules", metavar="DIR", help="pixel region rules folder (default rules/pixels)"
    )
    p.add_argument(
        "--ocr-engine",
        choices=["tesseract", "rapidocr", "both"],
        default="both",
        help="OCR engine for --clean-pixels (default both)",
    )
    p.add_argument("--lang", default="eng", help="tesseract language(s) for --clean-pixels")
    p.set_defaults(func=_cmd_deid)

    p = sub.add_parser("rules", help="inspect rule files")
    rsub = p.add_subparsers(dest="rules_command", required=True)
    show = rsub.add_parser("show", help="print the effective rule table of a profile")
    show.add_argument("--profile", default="research")
    check = rsub.add_parser("check", help="validate a site or profile file")
    check.add_argument("file")
    p.set_defaults(func=_cmd_rules)

    p = sub.add_parser("scan", help="find burned-in text in pixel data, overlays and icons")
    p.add_argument("source")
    p.add_argument(
        "--json", metavar="FINDINGS", help="write the findings here (they hold PHI: keep private)"
    )
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--lang", default="eng", help="tesseract language(s), e.g. eng+deu")
    p.add_argument(
        "--ocr-engine",
        # pipeline.pixels.engines.EngineName / DEFAULT_ENGINE, spelled out so that
        # building the parser imports no OCR (a test keeps the two in step).
        choices=["tesseract", "rapidocr", "both"],
        default="both",
        help="OCR engine; both: the union of tesseract's and rapidocr's words (default both)",
    )
    p.add_argument(
        "--no-prefilter",
        action="store_true",
        help="OCR every image whole, even those the pre-filter judges free of text",
    )
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser(
        "convert", help="convert raw k-space (Siemens twix, ISMRMRD) into anonymized ISMRMRD"
    )
    p.add_argument("source")
    p.add_argument("output")
    p.add_argument("--key-file", required=True)
    p.add_argument("--private-dir", help="link table and quarantine (default: beside the key)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--subjects",
        metavar="CSV",
        help="columns raw,patient_id[,issuer]: raw file SHA-256 or measurement ID -> patient",
    )
    p.add_argument(
        "--profile",
        default="research",
        help="DICOM profile whose date-shift range to use (default research), so raw and "
        "DICOM data of a subject get the same shift",
    )
    p.add_argument(
        "--header-rules", help="ISMRMRD header allowlist (default rules/ismrmrd/header.yaml)"
    )
    p.add_argument("--fastmri", metavar="DIR", help="also write fastMRI-layout training files here")
    p.add_argument(
        "--stall-seconds",
        type=float,
        default=600.0,
        help="quarantine an input whose conversion makes no progress this long (default 600)",
    )
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "export-fastmri", help="write fastMRI-layout training files from converted ISMRMRD files"
    )
    p.add_argument("source", help="a convert OUTPUT folder")
    p.add_argument("output")
    p.set_defaults(func=_cmd_export_fastmri)

    p = sub.add_parser("demo", help="run the pipeline on a generated sample")
    p.add_argument("folder", nargs="?", help="where to write (default: a new temp folder)")
    p.add_argument("--subjects", type=int, default=3)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CurationError as exc:
        print(f"mricurate: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
