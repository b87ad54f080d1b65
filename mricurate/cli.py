"""``mricurate``: the command line.

`deid`, `convert`, `scan`, `keygen` and `rules` call :mod:`pipeline` directly
(fast, no orchestrator start-up).  Messages refer to inputs by opaque keys;
PHI is only ever printed by the explicit, interactive ``deid --dry-run``.

Exit status: 0 done; 2 a setup error (nothing was written); 3 the run failed
on our side (a full disk, workers dying: no input blamed); 128 + N stopped by
signal N (130 Ctrl-C, 143 SIGTERM), with what was done kept.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import CurationError, RunFailure
from pipeline.keys import default_private_dir, generate_key, load_key, write_key
from pipeline.private_store import PrivateStore

if TYPE_CHECKING:
    from pipeline.batch.runner import RunOptions, RunSummary

_OCR_ENGINES = ["tesseract", "rapidocr", "both"]


def _private_store(
    args: argparse.Namespace, key_path: Path | None = None, outputs: dict[str, Path] | None = None
) -> PrivateStore:
    """``--private-dir``, or ``private/`` beside the key, once the layout is known to be safe.

    The layout is checked before the store is made: making it creates its folder and
    link table, which must never happen inside SOURCE or OUTPUT.
    """
    from pipeline.batch.locations import check_locations

    if args.private_dir:
        root = Path(args.private_dir)
    elif key_path is None:
        raise CurationError("--private-dir is required: it holds the findings and OCR temp files")
    else:
        root = default_private_dir(key_path)
    key = key_path.resolve() if key_path is not None else None
    check_locations(Path(args.source), outputs or {}, root, key)
    return PrivateStore(root)


def _run_options(args: argparse.Namespace, key_path: Path | None = None) -> RunOptions:
    from pipeline.batch.runner import RunOptions

    return RunOptions(
        jobs=args.jobs,
        stall_seconds=args.stall_seconds,
        memory_bytes=args.memory_limit,
        max_inflated_bytes=args.max_inflated_mb << 20,
        key_file=key_path.resolve() if key_path is not None else None,
    )


def _finish(summary: RunSummary, title: str) -> int:
    from mricurate.console import print_summary

    print_summary(summary, title)
    if summary.stopped_by:
        print(
            f"stopped by {summary.stopped_by}: what is listed was finished and kept; run the "
            "same command again to go on (unchanged inputs are skipped)"
        )
    return summary.exit_status


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
    from mricurate.console import progress_bar
    from pipeline.steps.dicom_file import deidentify_tree

    cleaning = None
    if args.clean_pixels:
        from pipeline.pixels.blank import PixelCleaning
        from pipeline.pixels.engines import make_engine
        from pipeline.pixels.regions import load_region_rules

        # Rules are validated before any file is read; the engine is checked by the run.
        rules = load_region_rules(Path(args.pixel_rules) if args.pixel_rules else None)
        engine = make_engine(args.ocr_engine, language=args.lang)
        cleaning = PixelCleaning(engine, rules)
    private = _private_store(args, key_path, {"OUTPUT": Path(args.output)})
    with progress_bar("de-identifying") as progress:
        summary = deidentify_tree(
            Path(args.source),
            Path(args.output),
            key,
            profile,
            private,
            keep_burned_in=args.keep_burned_in,
            dicomdir=args.dicomdir,
            cleaning=cleaning,
            options=_run_options(args, key_path),
            progress=progress,
        )
    status = _finish(
        summary, f"run {summary.run_id}: deid, profile {profile.name}, {summary.seen} input(s)"
    )
    print(f"output: {Path(args.output).resolve()}")
    print(f"link table, quarantine and run record (private): {private.root}")
    return status


def _cmd_rules(args: argparse.Namespace) -> int:
    from pipeline.deface.rules import load_deface_rules
    from pipeline.dicom.profile import load_profile

    if args.rules_command == "check":
        if Path(args.file).parent.name == "deface":
            load_deface_rules(Path(args.file))
            print(f"{args.file}: OK (defacing rules)")
            return 0
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
    deface = load_deface_rules()
    print(
        f"# defacing: {deface.path.name}; digest {deface.digest[:16]} (workspace: [deface] in mricurate.toml)"
    )
    print(f"{'setting':<36} {'value':<40} decided by")
    for name, value, origin in deface.table():
        print(f"{name:<36} {value:<40} {origin}")
    from pipeline.pixels.regions import load_region_rules

    pixels = load_region_rules(Path(args.pixel_rules) if args.pixel_rules else None)
    print(
        f"# pixel rules: {len(pixels.rules)} region rule(s), {len(pixels.priors)} header prior(s)"
    )
    for prior in pixels.priors:
        when = ", ".join(c.name for c in prior.conditions)
        print(f"prior text={prior.text.value:<8} {prior.origin:<40} {prior.name} (when {when})")
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from mricurate.console import progress_bar
    from pipeline.pixels.engines import make_engine
    from pipeline.pixels.scan import write_findings
    from pipeline.steps.scan_file import scan_tree
    from pipeline.storage import writing

    engine = make_engine(args.ocr_engine, language=args.lang)
    private = _private_store(args)
    with progress_bar("scanning") as progress:
        summary, findings = scan_tree(
            Path(args.source), engine, private, prefilter=not args.no_prefilter,
            options=_run_options(args), progress=progress,
        )  # fmt: skip
    target = Path(args.json) if args.json else private.root / "findings" / f"{summary.run_id}.json"
    try:
        with writing("the findings file", target.parent):
            write_findings(findings, target)
    except RunFailure as failure:
        failure.summary = summary
        raise
    status = _finish(
        summary, f"run {summary.run_id}: scan with {engine.name}, {summary.seen} input(s)"
    )
    print(f"findings (hold PHI: keep them private): {target.resolve()}")
    return status


def _cmd_convert(args: argparse.Namespace) -> int:
    from mricurate.console import progress_bar
    from pipeline.dicom.profile import load_profile
    from pipeline.raw.header_rules import load_header_rules
    from pipeline.raw.subject_lookup import load_subject_mapping
    from pipeline.steps.raw_file import convert_tree

    key_path = Path(args.key_file)
    key = load_key(key_path)
    rules = load_header_rules(Path(args.header_rules) if args.header_rules else None)
    # The DICOM profile's shift range gives a subject the same shift on both sides.
    span = load_profile(args.profile).date_shift_days
    mapping = load_subject_mapping(Path(args.subjects)) if args.subjects else None
    outputs = {"OUTPUT": Path(args.output)}
    if args.fastmri:
        outputs["--fastmri"] = Path(args.fastmri)
    private = _private_store(args, key_path, outputs)
    with progress_bar("converting") as progress:
        summary = convert_tree(
            Path(args.source),
            Path(args.output),
            key,
            private,
            rules,
            date_shift_days=span,
            subjects=mapping,
            fastmri=Path(args.fastmri) if args.fastmri else None,
            options=_run_options(args, key_path),
            progress=progress,
        )
    status = _finish(summary, f"run {summary.run_id}: convert, {summary.seen} input(s)")
    print(f"output: {Path(args.output).resolve()}")
    if args.fastmri:
        print(f"fastMRI files: {Path(args.fastmri).resolve()}")
        if summary.facts.get("fastMRI skipped"):
            print(
                "  image measurements without a fastMRI layout (undersampled, non-Cartesian, "
                "...) are released as ISMRMRD only"
            )
    print(f"link table, quarantine and run record (private): {private.root}")
    return status


def _cmd_export_fastmri(args: argparse.Namespace) -> int:
    from pipeline.raw.fastmri import export_fastmri_tree

    written, skipped, failed = export_fastmri_tree(Path(args.source), Path(args.output))
    print(f"fastMRI files written {written}, noise or non-image measurements skipped {skipped}")
    for relpath, reason in failed:
        print(f"  - {relpath}: {reason}")
    print(f"output: {Path(args.output).resolve()}")
    return 1 if failed else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mricurate.demo_command import cmd_demo

    return cmd_demo(args)


def _size(text: str) -> int:
    """``4G``, ``512M``, ``1.5G`` or a number of bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4G, 512M)")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024**power)


def _run_group() -> argparse.ArgumentParser:
    """Options every batch command shares: how the run is carried out."""
    from pipeline.batch.runner import DEFAULT_STALL_SECONDS, default_jobs

    group = argparse.ArgumentParser(add_help=False)
    run = group.add_argument_group("run")
    run.add_argument("--private-dir", help="link table, quarantine and temp files (PHI)")
    run.add_argument(
        "--jobs", type=int, default=default_jobs(), help="worker processes (default: the CPUs)"
    )
    run.add_argument(
        "--stall-seconds",
        type=float,
        default=DEFAULT_STALL_SECONDS,
        help=f"quarantine an input that makes no progress this long (default {DEFAULT_STALL_SECONDS:g})",
    )
    run.add_argument(
        "--memory-limit",
        type=_size,
        metavar="SIZE",
        help="address space each worker may use, e.g. 4G (default: a share of 4/5 of the "
        "machine's memory); an input that needs more is quarantined as too large",
    )
    run.add_argument(
        "--max-inflated-mb",
        type=int,
        default=512,
        metavar="MB",
        help="largest a deflated DICOM dataset may inflate to (default 512)",
    )
    return group


def _key_group() -> argparse.ArgumentParser:
    group = argparse.ArgumentParser(add_help=False)
    group.add_argument("--key-file", required=True, help="the secret key (mricurate keygen)")
    return group


def _ocr_group(purpose: str) -> argparse.ArgumentParser:
    group = argparse.ArgumentParser(add_help=False)
    ocr = group.add_argument_group("OCR")
    ocr.add_argument(
        # pipeline.pixels.engines.EngineName / DEFAULT_ENGINE, spelled out so that
        # building the parser imports no OCR (a test keeps the two in step).
        "--ocr-engine",
        choices=_OCR_ENGINES,
        default="both",
        help=f"OCR engine{purpose}; both: the union of tesseract's and rapidocr's words "
        "(default both)",
    )
    ocr.add_argument("--lang", default="eng", help="tesseract language(s), e.g. eng+deu")
    return group


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mricurate",
        description="Turn hospital MRI data into a research dataset that exposes no patient.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run, key = _run_group(), _key_group()

    p = sub.add_parser("keygen", help="write a new secret key (mode 0600)")
    p.add_argument("keyfile")
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser(
        "deid",
        parents=[key, run, _ocr_group(" for --clean-pixels")],
        help="de-identify every DICOM file under SOURCE into OUTPUT",
        description="--private-dir defaults to private/ beside the key.",
    )
    p.add_argument("source")
    p.add_argument("output", nargs="?")
    p.add_argument("--profile", default="research", help="profile name or file (default research)")
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
    p.set_defaults(func=_cmd_deid)

    p = sub.add_parser("rules", help="inspect rule files")
    rsub = p.add_subparsers(dest="rules_command", required=True)
    show = rsub.add_parser("show", help="print the effective rule table of a profile")
    show.add_argument("--profile", default="research")
    show.add_argument(
        "--pixel-rules", metavar="DIR", help="pixel rules folder (default rules/pixels)"
    )
    check = rsub.add_parser("check", help="validate a site or profile file")
    check.add_argument("file")
    p.set_defaults(func=_cmd_rules)

    p = sub.add_parser(
        "scan",
        parents=[run, _ocr_group("")],
        help="find burned-in text in pixel data, overlays and icons",
        description="--private-dir is required: OCR's temp files and the findings hold PHI.",
    )
    p.add_argument("source")
    p.add_argument(
        "--json",
        metavar="FINDINGS",
        help="write the findings here (they hold PHI; default: findings/<run>.json in the "
        "private location)",
    )
    p.add_argument(
        "--no-prefilter",
        action="store_true",
        help="OCR every image whole, even those the pre-filter judges free of text",
    )
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser(
        "convert",
        parents=[key, run],
        help="convert raw k-space (Siemens twix, ISMRMRD) into anonymized ISMRMRD",
        description="--private-dir defaults to private/ beside the key.",
    )
    p.add_argument("source")
    p.add_argument("output")
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
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "export-fastmri", help="write fastMRI-layout training files from converted ISMRMRD files"
    )
    p.add_argument("source", help="a convert OUTPUT folder")
    p.add_argument("output")
    p.set_defaults(func=_cmd_export_fastmri)

    from mricurate.workspace_commands import register

    register(sub)

    from mricurate import net_commands

    net_commands.register(sub)

    p = sub.add_parser(
        "demo", help="a new workspace, a generated sample in incoming/, one ingest run"
    )
    p.add_argument("folder", nargs="?", help="where to write (default: a new temp folder)")
    p.add_argument(
        "--stages",
        action="store_true",
        help="each library stage on its own instead (deid, deface, convert, scan), no workspace",
    )
    p.add_argument("--subjects", type=int, default=3)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RunFailure as exc:
        from mricurate.console import print_summary
        from pipeline.batch.runner import RunSummary

        if isinstance(exc.summary, RunSummary):
            print_summary(exc.summary, f"run {exc.summary.run_id}: what was done before it failed")
        print(f"mricurate: the run failed: {exc}", file=sys.stderr)
        return 3
    except CurationError as exc:
        print(f"mricurate: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from mricurate.workspace_commands import is_stage_failure

        if not is_stage_failure(exc):
            raise
        print(f"mricurate: the run failed: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("mricurate: interrupted before the run started; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
