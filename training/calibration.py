"""Calibration: the temperature ``T`` the served probabilities are divided by (in log space), fitted
on the validation split (the manifest's ``calibration``), and its part of the training report: the
reliability diagrams and the report's calibration section. The ranking never changes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handler.recognition import model as serving
from training import metrics, plots

METHOD = "temperature scaling, fitted on the validation split"
NOT_FITTED = (
    "every validation photo was right: a sharper answer always scores better there, so no finite "
    "temperature fits; the probabilities are served as the model gives them (T = 1)"
)
NOT_BETTER = (
    "the fitted temperature lowered the validation split's NLL but not its expected calibration "
    "error: the probabilities are served as the model gives them (T = 1)"
)
BINS = 15


@dataclass(frozen=True)
class Calibrated:
    """The served model's raw probabilities on the validation and test splits, and the manifest's
    ``calibration`` fitted on them (``fit``)."""

    validation: np.ndarray
    test: np.ndarray
    fields: dict

    @property
    def temperature(self) -> float:
        return self.fields["temperature"]


def temperature_of(validation_truth: np.ndarray, validation: np.ndarray) -> tuple[float, str | None]:
    """``T`` minimizing the validation split's NLL of ``calibrated(p, T)``, and None; or 1 and why
    not: a split with no mistake has no finite optimum (sharpening always lowers its NLL), and a
    ``T`` that does not lower the split's expected calibration error is not worth serving."""
    temperature = metrics.fit_temperature(validation_truth, validation)
    low = metrics.TEMPERATURE_BOUNDS[0]
    if temperature <= low * 1.001 and (validation.argmax(axis=1) == validation_truth).all():
        return 1.0, NOT_FITTED
    temperature = round(temperature, 4)
    if metrics.expected_calibration_error(
        validation_truth, serving.calibrated(validation, temperature)
    ) > metrics.expected_calibration_error(validation_truth, validation):
        return 1.0, NOT_BETTER  # decided on validation: the test split chooses nothing
    return temperature, None


def fit(
    validation_truth: np.ndarray,
    validation: np.ndarray,
    test_truth: np.ndarray,
    test: np.ndarray,
) -> dict:
    """The manifest's ``calibration`` from the raw served probabilities of both splits: ``T``
    (``temperature_of``: fitted on validation only), and the expected calibration error and NLL of
    both splits before and after; ``note`` says why when ``T`` stays 1."""
    temperature, note = temperature_of(validation_truth, validation)
    splits = {"validation": (validation_truth, validation), "test": (test_truth, test)}
    fitted = {
        "temperature": temperature,
        "method": METHOD,
        "ece_before": {k: round(metrics.expected_calibration_error(*v), 4) for k, v in splits.items()},
        "ece_after": {
            k: round(metrics.expected_calibration_error(truth, serving.calibrated(p, temperature)), 4)
            for k, (truth, p) in splits.items()
        },
        "nll_before": {k: round(metrics.negative_log_likelihood(*v), 4) for k, v in splits.items()},
        "nll_after": {
            k: round(metrics.negative_log_likelihood(truth, serving.calibrated(p, temperature)), 4)
            for k, (truth, p) in splits.items()
        },
        "bins": BINS,
    }
    if note:
        fitted["note"] = note
    return fitted


def reliability_figure(truth: np.ndarray, raw: np.ndarray, temperature: float, file: Path) -> None:
    """The reliability diagram of ``raw`` probabilities before and after ``calibrated(raw, T)``."""
    after = serving.calibrated(raw, temperature)
    curves = {
        f"before (ECE {metrics.expected_calibration_error(truth, raw):.3f})": metrics.reliability(truth, raw),
        f"after, T = {temperature:g} (ECE {metrics.expected_calibration_error(truth, after):.3f})": (
            metrics.reliability(truth, after)
        ),
    }
    plots.reliability_diagram(curves, file, f"Reliability ({len(truth)} photos, 15 bins)")


def report_section(fitted: dict) -> str:
    """The report's calibration section (markdown)."""
    lines = [
        "",
        "## Calibration",
        "",
        f"Served probabilities are `softmax(log p / T)` with T = {fitted['temperature']:g} "
        f"({fitted['method']}); `min_confidence` compares them. The ranking never changes.",
        "",
        "| expected calibration error (15 bins) | before | after |",
        "| --- | ---: | ---: |",
    ]
    for split in ("validation", "test"):
        lines.append(f"| {split} | {fitted['ece_before'][split]:.3f} | {fitted['ece_after'][split]:.3f} |")
    if "note" in fitted:
        lines += ["", f"Not fitted: {fitted['note']}."]
    lines += [
        "",
        "![reliability, test split](reliability.png) "
        "![reliability, validation split](validation/reliability.png)",
    ]
    return "\n".join(lines) + "\n"
