"""Classify image files with a trained CSAE: ``csae classify --model RUN_OR_EXPORT FILES_OR_DIRS...``.

    csae classify --model runs/mnist digit.png scans/            # a run directory
    csae classify --model exports/mnist --format json batch.npz  # an export (newest version)

Reads PNG and JPEG files, folders of them (recursively, in sorted order) and `.npy` / `.npz` arrays
of images (each image of an array is answered as ``file.npy[i]``; a .npz holds them as `x`,
`images` or its only array), under the input contract of `csae_tf.images` (raw pixels 0..255 at
the dataset's size). Prints one row per image: file, label (class id), class name, distance to the
nearest PEDCC centroid, margin (second-nearest minus nearest distance; small = ambiguous), and
`known` when the model has a reject option (then rejected images show the class "unknown").

A file that cannot be read or does not fit the model is reported on stderr, one line naming it;
the others are still answered and the exit status is 1. A model that cannot be loaded is status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

import numpy as np

from csae_tf import images as image_files
from csae_tf.errors import command
from csae_tf.predictor import Predictor, load

FORMATS = ("table", "json", "csv")
FAILED = 1
UNKNOWN = "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csae classify", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", required=True,
                        help="run directory (config.json + model.keras) or SavedModel export (base or version)")
    parser.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="PNG / JPEG / .npy / .npz files or folders")
    parser.add_argument("--format", default="table", choices=FORMATS, help="output format (default: table)")
    return parser


def read_inputs(inputs: list[str], predictor: Predictor) -> tuple[list[image_files.Source], list[str]]:
    """(sources that meet the contract for this model, one error line per file that does not)."""
    sources, problems = [], []
    for spec in inputs:
        try:
            paths = image_files.files_in(spec)
        except image_files.ImageError as err:
            problems.append(str(err))
            continue
        for path in paths:
            try:
                source = image_files.read_file(path)
                source.images = predictor.check(source.images, str(path))
            except image_files.ImageError as err:
                problems.append(str(err))
                continue
            sources.append(source)
    return sources, problems


def classify_sources(predictor: Predictor, sources: list[image_files.Source]) -> list[dict]:
    """One answer per image of `sources`, in order; images of one size are classified together."""
    by_size: dict[tuple, list[int]] = {}
    for i, source in enumerate(sources):
        by_size.setdefault(source.images.shape[1:], []).append(i)
    answers: list[list[dict] | None] = [None] * len(sources)
    for members in by_size.values():
        found = predictor.classify(np.concatenate([sources[i].images for i in members]))
        start = 0
        for i in members:
            rows = []
            for j, name in enumerate(sources[i].names):
                row = {"file": name, **{k: v[start + j].item() for k, v in found.items()}}
                if row.get("known") is False:
                    row["class_name"] = UNKNOWN
                rows.append(row)
            answers[i] = rows
            start += len(sources[i].names)
    return [row for rows in answers for row in rows]


def _columns(rows: list[dict]) -> list[str]:
    return ["file", "label", "class_name", "distance", "margin"] + (["known"] if rows and "known" in rows[0] else [])


def format_rows(rows: list[dict], fmt: str) -> str:
    """The answers as an aligned table, a JSON list of objects, or CSV with a header."""
    columns = _columns(rows)
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    text = [[str(r["file"]), str(r["label"]), str(r["class_name"]), f"{r['distance']:.4f}", f"{r['margin']:.4f}"]
            + ([str(r["known"]).lower()] if "known" in r else []) for r in rows]
    header = ["file", "label", "class", "distance", "margin"] + (["known"] if "known" in columns else [])
    widths = [max(len(row[k]) for row in [header, *text]) for k in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if k < 1 or k == 2 else cell.rjust(w) for k, (cell, w) in
                       enumerate(zip(row, widths))).rstrip() for row in [header, *text]]
    return "\n".join(lines)


@command()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    predictor = load(args.model)
    sources, problems = read_inputs(args.inputs, predictor)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    rows = classify_sources(predictor, sources)
    if rows or args.format != "table":
        print(format_rows(rows, args.format))
    return FAILED if problems else 0


if __name__ == "__main__":
    sys.exit(main())
