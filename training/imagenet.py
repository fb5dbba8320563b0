"""The ImageNet model as ``make model`` builds it: layers' export (``layers.model.export``: fp32,
and int8 when asked), then, with ``--calibration-data DIR`` (``make model CALIBRATE=DIR``), a
temperature fitted on those labelled photos, then what serving it costs (``training.cost``: synth
holds the deployment to it), swapped into place once all of it is written.

No temperature by default: the photos shared with this project come from ImageNet's training set,
on which the model is more sure of itself than on a user's photos, so a temperature fitted on them
would be wrong. The image's export stage runs the export alone (its cost is this one's: same code,
same weights).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from handler.recognition import model as serving
from layers.model import export, manifest_writer
from training import cost, evaluate, metrics
from training.dataset import load


def calibrate(model_dir: Path, photos: Path) -> dict:
    """A temperature for the ImageNet export fitted on ``photos`` (a folder per class, named after
    an ImageNet label or WordNet id): photos the model never trained on, or the fit learns how
    sure it is of what it memorized. With the expected calibration error before and after."""
    classifier = serving.load_classifier(model_dir, "litert", threads=os.cpu_count() or 1)
    dataset = load(photos, progress=False)
    truth = np.asarray(evaluate._class_map(classifier, dataset.classes))[dataset.labels]
    raw = evaluate.probabilities(classifier, dataset.images)
    temperature = metrics.fit_temperature(truth, raw)
    return {
        "temperature": round(temperature, 4),
        "method": f"temperature scaling, fitted on {len(truth)} photos of {photos.name}",
        "ece_before": round(metrics.expected_calibration_error(truth, raw), 4),
        "ece_after": round(
            metrics.expected_calibration_error(truth, serving.calibrated(raw, temperature)), 4
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = export.arguments()
    parser.add_argument(
        "--calibration-data",
        type=Path,
        default=None,
        help="held-back labelled photos (a folder per ImageNet label or WordNet id) to fit a temperature on",
    )
    args = parser.parse_args(argv)
    staging, manifest = export.staged(args)
    if args.calibration_data is not None:
        fields = {key: value for key, value in manifest.items() if key != "files"}
        fields["calibration"] = calibrate(staging, args.calibration_data)
        manifest = manifest_writer.write(staging, fields, list(manifest["files"]))
    manifest = cost.record(staging)  # what serving it costs: part of its contract
    export.replace(staging, args.out, manifest)
    print(f"  {cost.summary(manifest['cost'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
