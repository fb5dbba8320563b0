"""Drift alarms: the served model's answers in production against its card's validation baseline.

The handler emits, per prediction, in namespace ``METRICS_NAMESPACE`` with dimensions ``service``,
``model``, ``model_version``: ``Top1Confidence`` (0 to 1), ``ModelUncertain`` (0/1, when a
min_confidence applies) and, for models of at most ``MAX_TOP_CLASSES`` classes, ``TopClass_<label>``
(0/1 for every class: its average is the class's share of top-1 answers). ``imgrec train`` writes
the same figures, measured on the validation split, into the card (``card.baseline``).

- ``ModelUncertainRateDrift``: |average ModelUncertain - baseline ``uncertain_rate``| above
  ``driftUncertainRatePoints`` / 100 (only when the baseline has a rate: a min_confidence applies).
- ``ModelClassMixDrift``: the largest |class share - baseline share| over the classes above
  ``driftClassSharePoints`` / 100.

Both over ``driftPeriodMinutes`` periods, 2 breaching of ``DRIFT_EVALUATION_PERIODS``, a period
with fewer than ``driftMinPredictions`` predictions (the SampleCount of Top1Confidence) or none
counting as not breaching. A model without a baseline (the ImageNet export) gets no drift alarm.

CloudWatch allows an alarm 10 metrics and 10 expressions: with 10 classes the last class's share
is 1 minus the others' (every prediction counts 1 for exactly one class), and the per-class
deviations are folded pairwise (max(a, b) = (a + b + |a - b|) / 2) before one MAX.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from handler.contract import (
    IMAGENET_MODEL,
    METRICS_NAMESPACE,
    SERVICE_NAME,
    WATCHED_CLASSES,
    top_class_metric,
)
from handler.recognition import manifest as model_manifest
from infra.settings import DRIFT_EVALUATION_PERIODS, REPO_ROOT, Settings

# The handler emits TopClass_<label> for models of at most this many classes; both sides take the
# metric names from handler.contract (light: the CDK app loads no Powertools).
MAX_TOP_CLASSES = WATCHED_CLASSES
MAX_ALARM_METRICS = 10  # CloudWatch: metrics (and, separately, expressions) in one alarm
DRIFT_DATAPOINTS = 2  # breaching periods of DRIFT_EVALUATION_PERIODS that raise a drift alarm


def number(value: float) -> str:
    """A baseline figure written into a metric math expression (fixed-point: no exponent)."""
    return f"{value:.6f}"


@dataclass(frozen=True)
class Baseline:
    """``card.baseline`` as the alarms use it."""

    predictions: int
    mean_top1_confidence: float | None
    uncertain_rate: float | None
    top_class_share: dict[str, float]


@dataclass(frozen=True)
class ServedModel:
    """The model the functions serve: name and version (the metrics' dimensions), its labels, and
    its card's baseline (None without one)."""

    name: str
    version: str
    labels: tuple[str, ...] | None  # None: not read (the ImageNet export's 1000 classes)
    baseline: Baseline | None

    @classmethod
    def of(cls, settings: Settings) -> ServedModel:
        if not settings.model_dir:  # the image's ImageNet export: no card, no baseline
            return cls(IMAGENET_MODEL["name"], IMAGENET_MODEL["version"], None, None)
        model_dir = REPO_ROOT / settings.model_dir
        fields = model_manifest.read_checked(model_dir)  # Settings validated the directory
        labels = tuple(label for _, label in model_manifest.read_labels(model_dir, fields))
        card = fields.get("card") or {}
        raw = card.get("baseline") if isinstance(card, dict) else None
        where = f"modelDir {settings.model_dir}: manifest field 'card.baseline"
        baseline = None if raw is None else parse_baseline(raw, labels, where)
        return cls(fields["name"], fields["version"], labels, baseline)

    @property
    def dimensions(self) -> dict[str, str]:
        return {"service": SERVICE_NAME, "model": self.name, "model_version": self.version}

    @property
    def top_classes(self) -> tuple[str, ...]:
        """The labels that have a ``TopClass_`` metric each (none past ``MAX_TOP_CLASSES``)."""
        if self.labels is None or len(self.labels) > MAX_TOP_CLASSES:
            return ()
        return self.labels

    def metric(self, name: str, statistic: str, period: Duration, label: str | None = None) -> cw.Metric:
        """The model's own per-prediction metric ``name``."""
        return cw.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map=self.dimensions,
            statistic=statistic,
            period=period,
            label=label,
        )


def _share(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{where} must be a number from 0 to 1, got {value!r}")
    return float(value)


def parse_baseline(raw: object, labels: tuple[str, ...], where: str) -> Baseline:
    """``card.baseline`` checked (contract: predictions, mean_top1_confidence, uncertain_rate or
    null, top_class_share of every class summing to 1); a bad one fails the synth by field."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}' must be an object, got {type(raw).__name__}")
    predictions = raw.get("predictions")
    if isinstance(predictions, bool) or not isinstance(predictions, int) or predictions < 1:
        raise ValueError(f"{where}.predictions' must be a positive integer, got {predictions!r}")
    confidence = raw.get("mean_top1_confidence")
    confidence = None if confidence is None else _share(confidence, f"{where}.mean_top1_confidence'")
    uncertain = raw.get("uncertain_rate")
    uncertain = None if uncertain is None else _share(uncertain, f"{where}.uncertain_rate'")
    shares = raw.get("top_class_share", {})
    if not isinstance(shares, dict):
        raise ValueError(f"{where}.top_class_share' must map each class to its share")
    unknown = sorted(set(shares) - set(labels))
    if unknown:
        raise ValueError(f"{where}.top_class_share' names classes the model does not have: {unknown}")
    checked = {label: _share(share, f"{where}.top_class_share.{label}'") for label, share in shares.items()}
    if checked and not math.isclose(sum(checked.values()), 1, abs_tol=0.01):
        raise ValueError(f"{where}.top_class_share' must sum to 1, got {sum(checked.values()):.4f}")
    return Baseline(predictions, confidence, uncertain, checked)


class DriftAlarms(Construct):
    """``alarms``: the drift alarms of the served model (none without a card baseline)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        model: ServedModel,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.model = model
        self.period = Duration.minutes(settings.drift_period_minutes)
        self.alarms: list[cw.Alarm] = []
        baseline = model.baseline
        if baseline is None:
            return
        if baseline.uncertain_rate is not None:
            self.alarms.append(self._uncertain_rate(baseline.uncertain_rate))
        classes = model.top_classes
        if len(classes) >= 2 and set(classes) == set(baseline.top_class_share):
            self.alarms.append(self._class_mix(classes, baseline.top_class_share))
        for alarm in self.alarms:
            alarm.add_alarm_action(actions.SnsAction(topic))
            alarm.add_ok_action(actions.SnsAction(topic))

    @property
    def _enough(self) -> str:
        return f"predictions >= {self.settings.drift_min_predictions}"

    def _predictions(self) -> cw.Metric:
        return self.model.metric("Top1Confidence", "SampleCount", self.period)

    def _uncertain_rate(self, rate: float) -> cw.Alarm:
        points = self.settings.drift_uncertain_rate_points
        drift = cw.MathExpression(
            expression=f"IF({self._enough}, ABS(uncertain - {number(rate)}), 0)",
            using_metrics={
                "uncertain": self.model.metric("ModelUncertain", "Average", self.period),
                "predictions": self._predictions(),
            },
            label=f"|uncertain rate - baseline {rate:.3f}|",
            period=self.period,
        )
        return self._alarm(
            "ModelUncertainRateDrift",
            drift,
            points,
            f"{self._model_name}: the share of uncertain answers moved more than {points:g} points from "
            f"the validation baseline ({100 * rate:.1f} %)",
        )

    def _class_mix(self, classes: tuple[str, ...], shares: dict[str, float]) -> cw.Alarm:
        points = self.settings.drift_class_share_points
        # One metric is the prediction count: with MAX_ALARM_METRICS classes the last one is derived.
        measured = classes if len(classes) < MAX_ALARM_METRICS else classes[:-1]
        shares_of = {
            f"c{i}": self.model.metric(top_class_metric(label), "Average", self.period)
            for i, label in enumerate(measured)
        }
        terms = [f"ABS(c{i} - {number(shares[label])})" for i, label in enumerate(measured)]
        if len(measured) < len(classes):
            others = " - ".join(shares_of)
            terms.append(f"ABS(1 - {others} - {number(shares[classes[-1]])})")
        using: dict[str, cw.IMetric] = {"predictions": self._predictions()}
        for index in range(0, len(terms), 2):
            pair = terms[index : index + 2]
            folded = (
                pair[0] if len(pair) == 1 else f"({pair[0]} + {pair[1]} + ABS({pair[0]} - {pair[1]})) / 2"
            )
            used = {key: metric for key, metric in shares_of.items() if re.search(rf"\b{key}\b", folded)}
            using[f"d{index // 2}"] = cw.MathExpression(
                expression=folded, using_metrics=used, period=self.period
            )
        deviations = [key for key in using if key.startswith("d")]
        largest = deviations[0] if len(deviations) == 1 else f"MAX([{', '.join(deviations)}])"
        drift = cw.MathExpression(
            expression=f"IF({self._enough}, {largest}, 0)",
            using_metrics=using,
            label="largest |class share - baseline share|",
            period=self.period,
        )
        baseline = ", ".join(f"{label} {100 * shares[label]:.1f} %" for label in classes)
        return self._alarm(
            "ModelClassMixDrift",
            drift,
            points,
            f"{self._model_name}: a class's share of top-1 answers moved more than {points:g} points from "
            f"the validation baseline ({baseline})",
        )

    @property
    def _model_name(self) -> str:
        return f"Model {self.model.name} {self.model.version}"

    def _alarm(self, alarm_id: str, metric: cw.IMetric, points: float, description: str) -> cw.Alarm:
        minutes = self.settings.drift_period_minutes
        return metric.create_alarm(
            self,
            alarm_id,
            alarm_description=f"{description} in {DRIFT_DATAPOINTS} of {DRIFT_EVALUATION_PERIODS} "
            f"{minutes}-minute periods with at least {self.settings.drift_min_predictions} predictions",
            threshold=points / 100,
            evaluation_periods=DRIFT_EVALUATION_PERIODS,
            datapoints_to_alarm=DRIFT_DATAPOINTS,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
