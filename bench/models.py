"""``make train-examples``: train both shared datasets with the documented settings, then write
``models.md`` (each card's validation figures, training time on this machine, the plots).

The models land in ``build/models/<name>/`` like ``make train``; ``models.md`` and the evaluation
plots it shows (``model-plots/``: charts, never dataset photos) go to ``build/bench/``
(``--write-docs``: the tracked ``docs/``; ``--out``: any folder). Datasets come from
``../shared/datasets`` (never committed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import output
from bench.photos import REPO

DATASETS = REPO.parent / "shared" / "datasets"
# name: (folder under ../shared/datasets, training options). The documented settings.
EXAMPLES = {
    "hymenoptera": ("hymenoptera/train", {"epochs": 15, "quantize": "int8"}),
    # Dermoscopy has no "up": any rotation; more zoom, more dropout, more patience (small, noisy split).
    "skin-lesions": (
        "skin-lesions",
        {
            "epochs": 40,
            "patience": 10,
            "rotation": 0.5,
            "zoom": 0.2,
            "dropout": 0.5,
            "quantize": "int8",
            "min_confidence": 0.6,
        },
    ),
}


def train_one(name: str, folder: str, settings: dict) -> dict:
    from training.train import Options, train

    data = DATASETS / folder
    if not data.is_dir():
        raise SystemExit(f"No dataset at {data}: put the shared datasets at ../shared/datasets (see README).")
    started = time.perf_counter()
    manifest = train(data, REPO / "build" / "models" / name, Options(name=name, **settings))
    return {
        "name": name,
        "folder": folder,
        "seconds": round(time.perf_counter() - started, 1),
        "manifest": manifest,
    }


def section(run: dict, plots: Path) -> str:
    card = run["manifest"]["card"]
    figures = card["validation"]
    counts = ", ".join(f"{c} {n['train']}+{n['validation']}" for c, n in card["classes"].items())
    shown = (
        "epochs",
        "patience",
        "rotation",
        "zoom",
        "dropout",
        "fine_tune_layers",
        "quantize",
        "min_confidence",
    )
    settings = json.dumps({k: v for k, v in card["hyperparameters"].items() if k in shown})
    lines = [
        f"## {run['name']}",
        "",
        f"`make train DATA=../shared/datasets/{run['folder']} NAME={run['name']}` with "
        f"`{settings}`; "
        f"classes (train+validation): {counts}; {len(card['data']['skipped'])} file(s) skipped.",
        "",
        "| measure (validation split, served `.tflite`) | value |",
        "| --- | ---: |",
        f"| accuracy | {figures['accuracy']:.3f} |",
        f"| balanced accuracy | {figures['balanced_accuracy']:.3f} |",
    ]
    if "roc_auc" in figures:
        lines.append(f"| ROC AUC | {figures['roc_auc']:.3f} |")
    agreement = card["tflite_vs_keras"]
    lines += [
        f"| `.tflite` vs `.keras`: top-1 agreement / max probability difference | "
        f"{agreement['top1_agreement']:.3f} / {agreement['max_abs_probability_difference']:.1e} |",
    ]
    if "int8" in card:
        lines.append(
            f"| int8 vs fp32 top-1 agreement; int8 accuracy | {card['int8']['top1_agreement']:.3f}; "
            f"{card['int8']['validation_accuracy']:.3f} |"
        )
    lines += [
        f"| training + export + evaluation on this machine (2 cores) | {run['seconds'] / 60:.1f} min |",
        "",
        f"![confusion matrix]({plots.name}/{run['name']}-confusion_matrix.png)",
    ]
    if "roc_auc" in figures:
        lines.append(f"![ROC]({plots.name}/{run['name']}-roc.png)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(EXAMPLES))
    output.add_arguments(parser)
    args = parser.parse_args(argv)
    runs = [train_one(name, *EXAMPLES[name]) for name in (args.only or EXAMPLES)]
    write(runs, output.folder(args))
    return 0


def write(runs: list[dict], out: Path) -> None:
    """``models.md`` and ``model-plots/`` into ``out``; the page on stdout, then where it went."""
    plots = out / "model-plots"
    plots.mkdir(parents=True, exist_ok=True)
    for run in runs:
        evaluation = REPO / "build" / "models" / run["name"] / "evaluation"
        for png in evaluation.glob("*.png"):
            shutil.copy(png, plots / f"{run['name']}-{png.name}")
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# Models trained on the shared datasets (`make train-examples`, {date})\n\n"
        "Each is the tutorial's transfer learning (frozen MobileNetV2 features, global average pooling, "
        "Dense 1024 relu, dropout, softmax) with flips/rotation/zoom augmentation, class weights and early "
        "stopping; figures are the *served* fp32 `.tflite` on a stratified 20 % validation split (seed 7), "
        "from each model's card (`GET /model`).\n\n" + "\n".join(section(run, plots) for run in runs)
    )
    (out / "models.md").write_text(text)
    print(text)
    print(f"wrote {output.shown(out / 'models.md')} and {output.shown(plots)}/")


if __name__ == "__main__":
    sys.exit(main())
