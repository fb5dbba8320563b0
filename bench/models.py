"""``make train-examples``: train both shared datasets with the documented settings, then write
``models.md`` (each card's test figures with intervals, training time on this machine).

The models land in ``build/models/<name>/`` like ``make train``, each with its evaluation charts
(``evaluation/``: confusion matrix, ROC, learning curves, reliability diagram), which ``models.md``
names and nothing commits: everything drawn from the shared datasets stays under ``build/``.
``models.md`` goes to ``build/bench/`` (``--write-docs``: the tracked ``docs/``; ``--out``: any
folder). Datasets come from ``../shared/datasets`` (never committed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import output
from bench.photos import REPO

DATASETS = REPO.parent / "shared" / "datasets"
# name: (folder under ../shared/datasets, training options). The documented settings.
EXAMPLES = {
    # Ants and bees are ImageNet classes (the recipes' zero-shot baseline maps them so): `make
    # train-examples` trains without the mapping, as `make train` does, and training finds it.
    "hymenoptera": (
        "hymenoptera/train",
        {
            "epochs": 15,
            "quantize": "int8",
            "imagenet_classes": "ants=ant,bees=bee",
            "outside": str(DATASETS / "skin-lesions"),  # the in-domain detector's outside set
        },
    ),
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
            "outside": str(DATASETS / "hymenoptera" / "train"),
        },
    ),
}


def train_one(name: str, folder: str, settings: dict) -> dict:
    from training.train import Options, train

    data = DATASETS / folder
    if not data.is_dir():
        raise SystemExit(f"No dataset at {data}: put the shared datasets at ../shared/datasets (see README).")
    started = time.perf_counter()
    # The default road: no --imagenet-classes (the ImageNet start is proposed from the photos).
    chosen = {key: value for key, value in settings.items() if key != "imagenet_classes"}
    manifest = train(data, REPO / "build" / "models" / name, Options(name=name, **chosen))
    return {
        "name": name,
        "folder": folder,
        "seconds": round(time.perf_counter() - started, 1),
        "manifest": manifest,
    }


def section(run: dict) -> str:
    card = run["manifest"]["card"]
    figures = card["test"]
    counts = ", ".join(f"{c} {n['train']}+{n['validation']}+{n['test']}" for c, n in card["classes"].items())
    shown = (
        "epochs",
        "patience",
        "rotation",
        "zoom",
        "dropout",
        "fine_tune_layers",
        "fine_tune_epochs",
        "fine_tune_learning_rate",
        "feature_cache",
        "feature_copies",
        "class_weight",
        "flip_average",
        "rotation_average",
        "imagenet_start",
        "imagenet_classes",
        "quantize",
        "min_confidence",
    )
    settings = json.dumps({k: v for k, v in card["hyperparameters"].items() if k in shown})
    low, high = figures["accuracy_95ci"]
    lines = [
        f"## {run['name']}",
        "",
        f"`make train DATA=../shared/datasets/{run['folder']} NAME={run['name']}` with "
        f"`{settings}`; classes (train+validation+test): {counts}; "
        f"{len(card['data']['skipped'])} file(s) skipped.",
        "",
        "| measure (**test split**: chose nothing; served `.tflite`) | value | 95 % interval |",
        "| --- | ---: | ---: |",
        f"| accuracy | {figures['accuracy']:.3f} | {low:.3f}-{high:.3f} |",
        f"| balanced accuracy | {figures['balanced_accuracy']:.3f} | |",
    ]
    if "roc_auc" in figures:
        auc_low, auc_high = figures["roc_auc_95ci"]
        lines.append(f"| ROC AUC | {figures['roc_auc']:.3f} | {auc_low:.3f}-{auc_high:.3f} |")
    for name, point in figures.get("operating_points", {}).items():
        lines.append(
            f"| {name} (threshold {point['threshold']:.3f}): sensitivity / specificity "
            f"| {point['sensitivity']:.3f} / {point['specificity']:.3f} | "
            f"{point['sensitivity_95ci'][0]:.2f}-{point['sensitivity_95ci'][1]:.2f} / "
            f"{point['specificity_95ci'][0]:.2f}-{point['specificity_95ci'][1]:.2f} |"
        )
    validation = card["validation"]
    lines.append(
        f"| validation split (stopped training, chose thresholds): accuracy / balanced "
        f"| {validation['accuracy']:.3f} / {validation['balanced_accuracy']:.3f} | |"
    )
    fitted = card.get("calibration")
    if fitted:
        before, after = fitted["ece_before"], fitted["ece_after"]
        lines.append(
            f"| calibration: temperature (fitted on validation); expected calibration error, test "
            f"before / after | {fitted['temperature']:.3f}; {before['test']:.3f} / {after['test']:.3f} | |"
        )
    detector = card.get("in_domain")
    if detector:
        passed, caught = detector["test_pass_rate_95ci"], detector["outside_catch_rate_95ci"]
        lines += [
            f"| in domain: test photos that pass (threshold: 95 % of validation) | "
            f"{detector['test_pass_rate']:.3f} | {passed[0]:.3f}-{passed[1]:.3f} |",
            f"| out of domain: outside photos caught ({detector['outside_photos']}: "
            f"{'; '.join(detector['outside_sources'])}) | {detector['outside_catch_rate']:.3f} | "
            f"{caught[0]:.3f}-{caught[1]:.3f} |",
            f"| in-domain detector: ROC AUC, test vs outside | {detector['auroc']:.3f} | |",
        ]
    agreement = card["tflite_vs_keras"]
    lines += [
        f"| `.tflite` vs `.keras`: top-1 agreement / max probability difference | "
        f"{agreement['top1_agreement']:.3f} / {agreement['max_abs_probability_difference']:.1e} | |",
    ]
    if "int8" in card:
        lines.append(
            f"| int8 vs fp32 top-1 agreement; int8 test accuracy | {card['int8']['top1_agreement']:.3f}; "
            f"{card['int8']['test_accuracy']:.3f} | |"
        )
    lines += [
        f"| training + export + evaluation on this machine (2 cores) | {run['seconds'] / 60:.1f} min | |",
        "",
        f"Charts (confusion matrix, {'ROC, ' if 'roc_auc' in figures else ''}learning curves, reliability "
        f"diagram): `build/models/{run['name']}/evaluation/`, drawn by `make train-examples`.",
    ]
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
    """``models.md`` into ``out``; the page on stdout, then where it went."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    recipes = out / "recipes.md"
    text = (
        f"# Models trained on the shared datasets (`make train-examples`, {date})\n\n"
        "Each is keras-io's two-phase transfer learning: the head (global average pooling, Dense 1024 relu, "
        "dropout, softmax) on MobileNetV2's frozen features, computed once and cached; then the top 30 base "
        "layers fine-tuned at a low learning rate with flips/rotation/zoom augmentation, batch-norm in "
        "inference mode; the served model averages each photo's answer with its mirror's. Where the classes "
        "are ImageNet's (hymenoptera: training proposes ants=ant, bees=bee from the zero-shot answer on its "
        "photos), the head is linear and "
        "starts as ImageNet's own classifier for them, and each phase is kept only if it beats what came "
        "before it on validation. Class weights, "
        "early stopping on the validation ROC AUC. Three stratified splits "
        "(seed 7): 70 % train, 15 % validation (stops training, chooses the thresholds), 15 % test (chooses "
        "nothing). Figures are the *served* fp32 `.tflite` on the **test split**, with 95 % intervals "
        "(Wilson for proportions, bootstrap for the AUC), from each model's card (`GET /model`).\n\n"
        + "\n".join(section(run) for run in runs)
        + (
            f"\n## How the recipe was chosen\n\n{recipes.read_text().split(chr(10), 2)[2]}"
            if recipes.is_file()
            else ""
        )
    )
    minutes = round(sum(run["seconds"] for run in runs) / 60, 1)
    (out / "models.json").write_text(json.dumps({"minutes": minutes, "date": date}) + "\n")
    (out / "models.md").write_text(text)
    print(text)
    print(f"wrote {output.shown(out / 'models.md')}")


if __name__ == "__main__":
    sys.exit(main())
