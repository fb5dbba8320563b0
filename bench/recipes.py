"""``make bench-recipes``: which training recipe, measured on both shared datasets' test splits.

Each recipe trains on the same split (seed 7: 70 % train, 15 % validation, 15 % test, stratified)
with the dataset's documented settings (``bench.models.EXAMPLES``) and its own changes. The recipe
is **chosen on the validation split** (ROC AUC, then accuracy, summed over both datasets); the
test split's figures (served fp32 ``.tflite``, 95 % intervals) are shown beside them and chose
nothing. Where ImageNet already knows the classes (ants and bees), the zero-shot baseline is
MobileNetV2's own ImageNet answer restricted to them: a recipe must beat it to be worth training.
One more recipe runs there: the head starts as that ImageNet classifier (``--imagenet-classes
ants=ant,bees=bee``, linear) and each phase is kept only if it beats what came before it on
validation, so training can only move away from the zero-shot answer by doing better on photos it
did not train on. On the shared ants and bees it cannot do better on test than the zero-shot
answer: the one test photo that answer misses is a dandelion, with no ant to be seen, filed under
ants (and the baseline is optimistic: these photos come from ImageNet's training set).
Writes ``recipes.md`` and ``recipes.json`` (the table ``docs/models.md`` shows).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import output
from bench.models import DATASETS, EXAMPLES

# Marks the recipe that starts the head as ImageNet's classifier: it runs on the datasets whose
# documented settings map their classes to ImageNet's (``--imagenet-classes``), with that mapping.
FROM_IMAGENET = "the dataset's --imagenet-classes"
# name: the changes to the dataset's documented settings (which recipes start from a random head).
RECIPES = {
    "head, cached features": {"fine_tune_layers": 0, "feature_cache": True},
    "head, streamed and augmented": {"fine_tune_layers": 0, "feature_cache": False},
    "head on features + ImageNet scores, cached": {"fine_tune_layers": 0, "imagenet_scores": True},
    "two-phase: cached head, then fine-tune top 30": {"fine_tune_layers": 30, "feature_cache": True},
    "two-phase + flip average": {"fine_tune_layers": 30, "flip_average": True},
    "two-phase + ImageNet scores + flip average": {
        "fine_tune_layers": 30,
        "flip_average": True,
        "imagenet_scores": True,
    },
    "ImageNet's classifier as the head's start, two-phase + flip average": {
        "fine_tune_layers": 30,
        "flip_average": True,
        "imagenet_classes": FROM_IMAGENET,
    },
}

ZERO_SHOT_ROW = "zero-shot: MobileNetV2's ImageNet answer"


def imagenet_classes(settings: dict) -> str:
    return settings.get("imagenet_classes", "")


def applies(recipe: str, settings: dict) -> bool:
    return RECIPES[recipe].get("imagenet_classes") != FROM_IMAGENET or bool(imagenet_classes(settings))


def run_recipe(name: str, folder: str, settings: dict, changes: dict) -> dict:
    from training.train import Options, train

    start = imagenet_classes(settings) if changes.get("imagenet_classes") == FROM_IMAGENET else ""
    options = Options(name=name, **{**settings, "quantize": None, **changes, "imagenet_classes": start})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        card = train(DATASETS / folder, Path(scratch) / name, options)["card"]
    return {
        "validation": card["validation"],
        "test": card["test"],
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "phase_seconds": card["phase_seconds"],
        "fine_tune_kept": card["history"].get("fine_tune", {}).get("kept", [None])[0],
        "head_kept": card["history"]["head"].get("kept", [None])[0],
    }


def zero_shot(folder: str, settings: dict) -> dict:
    """MobileNetV2's ImageNet probabilities of the folders' classes, renormalized, on the same
    validation and test splits the recipes are measured on."""
    from handler import config
    from handler.recognition import model
    from training import evaluate, metrics
    from training.dataset import load, stratified_split
    from training.options import Options

    options = Options(**{k: v for k, v in settings.items() if k in ("seed", "imagenet_classes")})
    classes = options.imagenet_mapping()
    dataset = load(DATASETS / folder, progress=False)
    _, validation, test = stratified_split(
        dataset.labels, options.validation_split, options.seed, options.test_split
    )
    classifier = model.load_classifier(config.read_settings().model_dir, "litert", threads=2)
    figures = {}
    for split, indexes in (("validation", validation), ("test", test)):
        part = dataset.subset(indexes)
        columns = [classifier.labels.index(classes[name]) for name in part.classes]
        probabilities = evaluate.probabilities(classifier, part.images)[:, columns]
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        result = metrics.summary(part.labels, probabilities, part.classes)
        correct = int((probabilities.argmax(1) == part.labels).sum())
        result["accuracy_95ci"] = metrics.wilson(correct, len(part.labels))
        result["roc_auc_95ci"] = metrics.bootstrap_auc(part.labels, probabilities[:, 1])
        wrong = np.flatnonzero(probabilities.argmax(1) != part.labels)
        result["missed"] = [str(Path(part.paths[i]).relative_to(DATASETS / folder)) for i in wrong]
        figures[split] = result
    return {**figures, "minutes": 0.0}


def chosen(results: dict) -> str:
    """The recipe with the best validation ROC AUC (then accuracy), summed over the datasets: among
    the recipes every dataset ran (the default, whatever the classes)."""
    recipes = [r for r in RECIPES if all(r in rows for rows in results.values())]

    def score(recipe: str) -> tuple[float, float]:
        rows = [rows[recipe]["validation"] for rows in results.values() if recipe in rows]
        return sum(r.get("roc_auc", 0.0) for r in rows), sum(r["accuracy"] for r in rows)

    return max(recipes, key=score)


def where_imagenet_knows(rows: dict) -> list[str]:
    """Where the zero-shot baseline exists: the recipe validation chooses there, and the photos the
    baseline gets wrong (to look at before hoping a recipe gets them right)."""
    baseline = rows.get(ZERO_SHOT_ROW)
    if baseline is None:
        return []
    trained = [r for r in rows if r in RECIPES]
    best = max(
        trained, key=lambda r: (rows[r]["validation"].get("roc_auc", 0), rows[r]["validation"]["accuracy"])
    )
    missed = {
        split: ", ".join(f"`{file}`" for file in baseline[split].get("missed", [])) or "none"
        for split in ("validation", "test")
    }
    return [
        f"Chosen on validation for these classes: **{best}** (test accuracy "
        f"{rows[best]['test']['accuracy']:.3f}; zero-shot {baseline['test']['accuracy']:.3f}). "
        f"The zero-shot answer misses, on validation: {missed['validation']}; on test: {missed['test']}."
    ]


def table(results: dict) -> str:
    best = chosen(results)
    lines = [f"Chosen on validation: **{best}**.", ""]
    for dataset, rows in results.items():
        first = next(iter(rows.values()))
        sizes = f"validation {first['validation']['images']} photos, test {first['test']['images']}"
        lines += [
            f"### {dataset} ({sizes})",
            "",
            "| recipe | validation ROC AUC / accuracy (chooses) | test accuracy (95 % CI) "
            "| test ROC AUC (95 % CI) | minutes |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for recipe, row in rows.items():
            test, validation = row["test"], row["validation"]
            low, high = test["accuracy_95ci"]
            auc = ""
            if "roc_auc" in test:
                auc_low, auc_high = test["roc_auc_95ci"]
                auc = f"{test['roc_auc']:.3f} ({auc_low:.3f}-{auc_high:.3f})"
            mark = " (chosen)" if recipe == best else ""
            kept = " (fine-tuning not kept)" if row.get("fine_tune_kept") == 0.0 else ""
            if kept and row.get("head_kept") == 0.0:
                kept = " (neither phase beat ImageNet's start: kept)"
            lines.append(
                f"| {recipe}{mark}{kept} | {validation.get('roc_auc', 0):.3f} / {validation['accuracy']:.3f} "
                f"| {test['accuracy']:.3f} ({low:.3f}-{high:.3f}) | {auc} | {row['minutes']:.1f} |"
            )
        lines += ["", *where_imagenet_knows(rows), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(EXAMPLES))
    parser.add_argument("--recipes", nargs="*", choices=list(RECIPES))
    parser.add_argument("--merge", action="store_true", help="update the rows of an earlier recipes.json")
    output.add_arguments(parser)
    args = parser.parse_args(argv)
    out = output.folder(args)
    earlier = out / "recipes.json"
    results: dict[str, dict] = json.loads(earlier.read_text()) if args.merge and earlier.is_file() else {}
    for name in args.only or EXAMPLES:
        folder, settings = EXAMPLES[name]
        rows = results.get(name, {})
        if imagenet_classes(settings):
            rows[ZERO_SHOT_ROW] = zero_shot(folder, settings)
        for recipe in [r for r in args.recipes or RECIPES if applies(r, settings)]:
            print(f"== {name}: {recipe}", flush=True)
            rows[recipe] = run_recipe(name, folder, settings, RECIPES[recipe])
        results[name] = {recipe: rows[recipe] for recipe in [*rows] if recipe in rows}
    (out / "recipes.json").write_text(json.dumps(results, indent=2, default=_plain) + "\n")
    (out / "recipes.md").write_text(
        "# Training recipes, measured\n\n" + __doc__.split("\n\n")[1] + "\n\n" + table(results)
    )
    print(table(results))
    print(f"wrote {output.shown(out / 'recipes.md')} and recipes.json")
    return 0


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else float(value)


if __name__ == "__main__":
    sys.exit(main())
