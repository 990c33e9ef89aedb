"""``daftseg-segment --manifest cohort.csv``: every row of a CSV segmented as the single-scan command does.

    image,boxes,output,modality
    scans/ct_001.nii.gz,boxes/ct_001.json,segs/ct_001_seg.nii.gz,CT
    scans/ct_002.nii.gz,labels/ct_002.nii.gz,segs/ct_002_seg.nii.gz,CT

``boxes`` is a boxes file (``.json``/``.csv``, as ``--boxes``) or a label map (any other file, as
``--boxes_from``); ``modality`` is optional (the column, or a row's empty cell, falls back to
``--modality``). Relative paths are relative to the manifest's folder. Every other option
(``-m``, ``--precision``, ``--box_space``, intensity options, ...) applies to every row.

Before anything runs, every row is checked: its inputs exist, its output has a label format, no
two rows write one output, and no output is replaced without ``--overwrite``: a row whose result
(label map, sidecar and boxes file) is complete is skipped, any other existing output is refused.
Rows then run in processes that each compile their models once (``--workers``), on a shard
(``--shard K/N``), or as a Slurm job array (``--slurm N``, scripts in ``<manifest>_slurm/``). A bad
row fails alone. The summary CSV has ``row,status,labels,seconds,error`` (status ``ok``,
``failed`` or ``skipped``).

``python -m daftseg.manifest cohort.csv --slurm_dir DIR`` is the job after the array: it checks
every row's result and merges the tasks' summaries into ``DIR/summary.csv``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from daftseg.inference.cohort import add_cohort_arguments

COLUMNS = ("image", "boxes", "output")
OPTIONAL_COLUMNS = ("modality",)
BOX_FILE_SUFFIXES = (".json", ".csv")
SUMMARY_HEADER = "row,status,labels,seconds,error"
# single-scan options a manifest row gives instead
ROW_OPTIONS = ("image", "boxes", "box", "boxes_from", "output")


class ManifestError(ValueError):
    """The manifest cannot be used; the message names the file and the row."""


@dataclass(frozen=True)
class Row:
    """One manifest row, paths resolved against the manifest's folder; ``number`` counts from 1."""

    number: int
    image: Path
    boxes: Path | None
    boxes_from: Path | None
    output: Path
    modality: str | None

    @property
    def key(self) -> str:
        return f"row {self.number}"


def add_manifest_arguments(p: argparse.ArgumentParser) -> None:
    """``--manifest``, ``--summary``, ``--shard`` and the cohort options, for ``daftseg-segment``."""
    m = p.add_argument_group("many scans (--manifest)")
    m.add_argument("--manifest", type=Path, metavar="CSV",
                   help="segment every row of a CSV with columns image,boxes,output[,modality] (boxes: a .json/.csv "
                        "boxes file, or a label map as --boxes_from; paths relative to the CSV's folder) instead "
                        "of --image; every other option applies to every row")
    m.add_argument("--summary", type=Path, metavar="FILE",
                   help="summary CSV row,status,labels,seconds,error (default: <manifest>.summary.csv next to "
                        "the manifest; with --shard K/N <manifest>.summary-K.csv)")
    m.add_argument("--shard", default=None, metavar="K/N",
                   help="rows of shard K of N only (K from 0): every N-th row, or size-balanced with --balance size")
    add_cohort_arguments(p, "rows", gts=False, overwrite=False)


def read_manifest(path: Path) -> list[Row]:
    """The rows of ``path``; raises ``ManifestError`` naming the row for a malformed one."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ManifestError(f"manifest {path}: {e.strerror or e}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        raise ManifestError(f"manifest {path}: columns must be {','.join(COLUMNS)}[,modality]; "
                            f"{'missing ' + ', '.join(missing) if missing else 'unknown ' + ', '.join(unknown)}")
    base = path.resolve().parent
    rows = []
    for number, raw in enumerate(reader, start=1):
        cells = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            raise ManifestError(f"manifest {path} row {number}: more cells than columns")
        if not any(cells.values()):
            continue
        empty = [c for c in COLUMNS if not cells.get(c)]
        if empty:
            raise ManifestError(f"manifest {path} row {number}: empty {', '.join(empty)}")
        image, boxes, output = (base / cells[c] for c in COLUMNS)
        is_box_file = boxes.name.lower().endswith(BOX_FILE_SUFFIXES)
        rows.append(Row(number, image, boxes if is_box_file else None, None if is_box_file else boxes, output,
                        cells.get("modality") or None))
    if not rows:
        raise ManifestError(f"manifest {path}: no rows")
    return rows


def result_complete(row: Row) -> bool:
    """True if the row's three result files exist and belong together: the sidecar names this
    scan and the label file, and the label map has the sidecar's grid size (header only)."""
    from daftseg.io.results import result_paths

    paths = result_paths(row.output)
    if not all(p.is_file() for p in paths):
        return False
    try:
        sidecar = json.loads(paths.sidecar.read_text(encoding="utf-8"))
        size = tuple(sidecar["geometry"]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if sidecar.get("image") != str(row.image) or sidecar.get("labels_file") != paths.labels.name:
        return False
    return _label_size(paths.labels) == size


def _label_size(path: Path) -> tuple[int, ...] | None:
    """The (x, y[, z]) size of a label file, from its header where the format has one."""
    name = path.name.lower()
    try:
        if name.endswith(".npz"):
            from daftseg.inference.resume import npy_header

            found = npy_header(path, "segs")
            return tuple(reversed(found[0])) if found else None
        if name.endswith(".png"):
            import cv2

            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            return None if img is None else (img.shape[1], img.shape[0])
        from daftseg.io.medical import sitk_module

        reader = sitk_module().ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return tuple(int(v) for v in reader.GetSize())
    except Exception:  # noqa: BLE001 - unreadable: not complete
        return None


def check_rows(rows: list[Row], overwrite: bool) -> tuple[list[str], set[int]]:
    """(one error line per problem, numbers of the rows whose result is complete and is kept)."""
    from daftseg.io.results import label_suffix, result_paths
    from daftseg.io.scan import ScanError, scan_format

    errors: list[str] = []
    complete: set[int] = set()
    writers: dict[Path, int] = {}
    for row in rows:
        where = f"{row.key} ({row.image.name})"
        inputs = [p for p in (row.image, row.boxes, row.boxes_from) if p is not None]
        errors += [f"{where}: {p} not found" for p in inputs if not p.exists()]
        try:
            label_suffix(row.output)
        except ScanError as e:
            errors.append(f"{where}: {e}")
        # found now rather than after the scans before it ran: a SEG needs a DICOM series to reference
        if row.output.name.lower().endswith(".dcm") and row.image.exists() and scan_format(row.image) != "dicom":
            errors.append(f"{where}: {row.output}: DICOM SEG output references the instances of a DICOM series, "
                          f"and {row.image.name} is not one; write .nii.gz")
        target = row.output.resolve()
        if target in writers:
            errors.append(f"{where}: writes {row.output}, as row {writers[target]} does")
        writers.setdefault(target, row.number)
        if any(target == p.resolve() for p in inputs):
            errors.append(f"{where}: output {row.output} is an input of the row")
        if overwrite:
            continue
        existing = [p for p in result_paths(row.output) if p.exists() or p.is_symlink()]
        if existing and result_complete(row):
            complete.add(row.number)
        elif existing:
            one = len(existing) == 1
            errors.append(f"{where}: {', '.join(map(str, existing))} exist{'s' if one else ''} but "
                          f"{'is' if one else 'are'} not a complete result of this row (pass --overwrite to replace)")
    return errors, complete


def run_manifest(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``daftseg-segment --manifest``: check every row, then run the rows of this shard (module doc)."""
    from daftseg.inference.cohort import CohortError, check_cohort_arguments, file_size, select_shard
    from daftseg.inference.shards import ShardError, parse_shard

    given = [f"--{o}" for o in ROW_OPTIONS if getattr(args, o) is not None]
    if given:
        parser.error(f"{', '.join(given)}: a manifest row gives these; leave them out with --manifest")
    try:
        shard = parse_shard(args.shard)
        check_cohort_arguments(args)
    except (ShardError, CohortError) as e:
        parser.error(str(e))
    if args.threads < 0:
        parser.error("--threads must be >= 0")
    try:
        rows = read_manifest(args.manifest)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    errors, complete = check_rows(rows, args.overwrite)
    if not Path(args.models_dir).is_dir():
        errors.append(f"models folder {args.models_dir} not found (pass -m FOLDER)")
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        print(f"error: {len(errors)} problem{'s' if len(errors) > 1 else ''} in {args.manifest}; nothing was run",
              file=sys.stderr)
        return 1
    if args.slurm:
        from daftseg.cohort_slurm import write_manifest_jobs

        return write_manifest_jobs(args, parser, rows)
    if args.shard:
        chosen = select_shard([_name(r) for r in rows], [file_size(r.image) for r in rows], shard, args.balance,
                              sys.stdout)
        rows = [rows[i] for i in chosen]
    summary = args.summary or _default_summary(args.manifest, shard if args.shard else None)
    skipped = [r for r in rows if r.number in complete]
    todo = [r for r in rows if r.number not in complete]
    if skipped:
        print(f"skipped {len(skipped)} of {len(rows)} rows: their results are complete (--overwrite runs them "
              "again)", flush=True)
    results = {r.number: (r.number, "skipped", "", "", "") for r in skipped}
    t0 = time.perf_counter()
    failed = _run(todo, args, results) if todo else 0
    try:
        _write_summary(summary, results.values())
    except OSError as e:
        print(f"warning: cannot write the summary {summary}: {e.strerror or e}", file=sys.stderr)
    print(f"{len(todo) - failed} of {len(todo)} rows written{f', {failed} failed' if failed else ''}"
          f"{f', {len(skipped)} skipped' if skipped else ''} in {time.perf_counter() - t0:.1f}s; summary {summary}",
          flush=True)
    return 1 if failed else 0


def _name(row: Row) -> str:
    return f"{row.number:09d}"  # sorts as the manifest's order, for --balance name


def _default_summary(manifest: Path, shard: tuple[int, int] | None) -> Path:
    stem = manifest.name.removesuffix(manifest.suffix)
    return manifest.with_name(f"{stem}.summary{f'-{shard[0]}' if shard else ''}.csv")


def _write_summary(path: Path, rows) -> None:
    from daftseg.atomic import atomic_write_text

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUMMARY_HEADER.split(","))
    writer.writerows(sorted(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, out.getvalue())


class _Report:
    """Lines and finished rows of a run in this process (a worker has ``workers.Relay`` instead)."""

    def __init__(self, results: dict, progress) -> None:
        self.results, self.progress = results, progress

    def line(self, text: str, error: bool = False) -> None:
        self.progress.line(text, sys.stderr if error else None)

    def done(self, name: str, ok: bool, row=None) -> None:
        self.results[row[0]] = row
        self.progress.advance()


def _run(todo: list[Row], args: argparse.Namespace, results: dict) -> int:
    """Run ``todo`` here or in ``--workers`` processes; fills ``results``; returns the failures."""
    from daftseg.inference.progress import Progress

    progress = Progress(len(todo), out=sys.stdout, bar=sys.stderr)
    try:
        if not args.workers or args.workers == 1 or len(todo) == 1:
            return _run_rows(todo, args, _Report(results, progress), announce=True)
        return _run_workers(todo, args, results, progress)
    finally:
        progress.close()


def _run_workers(todo: list[Row], args: argparse.Namespace, results: dict, progress) -> int:
    from daftseg.inference.cohort import file_size
    from daftseg.inference.shards import split_by_size
    from daftseg.inference.workers import WorkerJob, core_sets, default_threads, run_pool

    k = min(args.workers, len(todo))
    threads = args.threads or default_threads(k)
    shares = split_by_size([_name(r) for r in todo], [file_size(r.image) for r in todo], k)
    cores = core_sets(k, threads)
    worker_args = copy.copy(args)
    worker_args.threads = threads
    jobs = [WorkerJob(i, [todo[j] for j in share], (worker_args, i == 0), cores[i]) for i, share in enumerate(shares)]
    for job in jobs:
        progress.line(f"worker {job.index}: {len(job.items)} rows, {threads} OpenVINO thread{'s' if threads > 1 else ''}")
    result = run_pool(_worker, jobs, lambda text, error: progress.line(text, sys.stderr if error else None),
                      progress.advance, name_of=lambda r: r.key)
    for row in result.rows:
        results[row[0]] = row
    for key in result.failed:  # rows of a worker that died have no summary line of their own
        number = int(key.split()[1])
        results.setdefault(number, (number, "failed", "", "", "worker ended before this row finished"))
    return len(result.failed)


def _worker(job, relay) -> int:
    args, announce = job.payload
    return 1 if _run_rows(job.items, args, relay, announce) else 0


def _run_rows(rows: list[Row], args: argparse.Namespace, report, announce: bool) -> int:
    """Segment ``rows`` in order with one Segmenter (made at the first row); returns the failures."""
    from daftseg import segment

    failed, segmenter = 0, None
    for row in rows:
        t0 = time.perf_counter()
        try:
            if segmenter is None:  # at the first row: a shard whose rows are all done compiles nothing
                segmenter = segment.make_segmenter(args, announce)
            row_args = _row_args(args, row)
            prepared = segment.prepare(row_args)
            result, _ = segment.run_model(row_args, prepared, segmenter)
            segment.save_result(row_args, prepared, result)
        except Exception as e:  # noqa: BLE001 - one bad row must not stop the others
            failed += 1
            message = segment._one_line(e)  # the single-scan command's wording
            report.line(f"error: {row.key} ({row.image}): {message}", True)
            report.done(row.key, False, (row.number, "failed", "", f"{time.perf_counter() - t0:.2f}", message))
            continue
        seconds = time.perf_counter() - t0
        labels = " ".join(str(int(v)) for v in sorted(set(prepared.labels.tolist())))
        report.line(f"{row.key}: {row.image} -> {row.output}  model={result.model}  boxes={len(prepared.boxes)}  "
                    f"{seconds:.2f}s")
        report.done(row.key, True, (row.number, "ok", labels, f"{seconds:.2f}", ""))
    return failed


def _row_args(args: argparse.Namespace, row: Row) -> argparse.Namespace:
    row_args = copy.copy(args)
    row_args.image, row_args.boxes, row_args.boxes_from, row_args.box = row.image, row.boxes, row.boxes_from, None
    row_args.output = row.output
    row_args.modality = row.modality or args.modality
    return row_args


# ---- the job after a --slurm array ----------------------------------------------------------------

def slurm_dir(manifest: Path) -> Path:
    return manifest.resolve().with_name(f"{manifest.name.removesuffix(manifest.suffix)}_slurm")


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """The check after a manifest's job array: every row's result, and one summary of all tasks."""
    p = argparse.ArgumentParser(prog="python -m daftseg.manifest",
                                description="Check every row of a manifest has a complete result; merge the "
                                            "summaries of a --slurm run's tasks into SLURM_DIR/summary.csv.")
    p.add_argument("manifest", type=Path)
    p.add_argument("--slurm_dir", type=Path, required=True, help="the folder of the tasks' summary-K.csv files")
    args = p.parse_args(argv)
    out = out or sys.stdout
    try:
        rows = read_manifest(args.manifest)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    reported: dict[int, list[str]] = {}
    for path in sorted(args.slurm_dir.glob("summary-*.csv"), key=lambda p: p.stat().st_mtime):
        with open(path, newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):  # a later run's line for a row replaces an earlier one's
                if rec.get("status") != "skipped" or int(rec["row"]) not in reported:
                    reported[int(rec["row"])] = [rec[k] for k in SUMMARY_HEADER.split(",")]
    merged, missing = [], 0
    for row in rows:
        rec = reported.get(row.number, [str(row.number), "missing", "", "", ""])
        if not result_complete(row):
            missing += 1
            print(f"error: {row.key} ({row.image}): no complete result {row.output}"
                  f"{': ' + rec[4] if rec[4] else ''}", file=sys.stderr)
            rec = [rec[0], "failed" if rec[1] == "failed" else "missing", *rec[2:]]
        elif rec[1] not in ("ok", "skipped"):
            rec = [rec[0], "ok", *rec[2:4], ""]
        merged.append((int(rec[0]), *rec[1:]))
    _write_summary(args.slurm_dir / "summary.csv", merged)
    print(f"{len(rows) - missing} of {len(rows)} rows of {args.manifest} have a complete result; summary "
          f"{args.slurm_dir / 'summary.csv'}", file=out, flush=True)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
