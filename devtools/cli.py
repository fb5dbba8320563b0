"""``imgrec``: the service on your machine, without Docker or an AWS account.

    imgrec predict PHOTO... [--model-dir DIR]   top-5 table per photo
    imgrec invoke EVENT.json           run the entry point for an event, print its result
    imgrec serve [--port 3000] [--s3]  local API Gateway stand-in on 127.0.0.1
    imgrec upload PHOTO [--api URL]    large photo: presigned S3 upload, then its result
    imgrec s3-demo [FOLDER]            the S3 path on moto's local S3 server
    imgrec backfill s3://BUCKET/PREFIX classify what is stored: report.csv + summary.json
    imgrec rie [--port 9000]           the real awslambdaric on a local Runtime API
    imgrec train DATA_DIR [DATA_DIR...] [--out DIR]   your own classes: train, export, evaluate (TensorFlow)
    imgrec evaluate DATA_DIR [--model-dir DIR]   the serving classifier on labelled photos: a report
    imgrec check-set MODEL_DIR [PHOTOS] [--photo FILE=LABEL]   the pre-traffic gate's check photos
    imgrec rollout-demo [--model-dir DIR]   what the pre-traffic gate decides for good and bad builds
    imgrec dataset export s3://BUCKET/PREFIX --out DIR   captured photos with feedback -> a data folder
    imgrec compare MODEL_DIR_A MODEL_DIR_B DATA [--json]   two models on the same labelled photos

``python -m devtools`` is the same command.

Logs and metrics (Powertools writes them to stdout in Lambda) go to stderr here, so stdout
carries only the result and can be piped (``| jq``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

DEFAULT_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "images"


def _load_app():
    """Import the Lambda entry points (this loads the model: the local cold start)."""
    from handler import app

    return app


def entry_point_for(event: dict[str, Any]):
    """The entry point AWS would call for this event shape (``handler.contract`` decides)."""
    from handler.contract import InvalidEvent, entry_point_for

    try:
        name = entry_point_for(event).rsplit(".", 1)[-1]
    except InvalidEvent as error:
        raise SystemExit(str(error)) from None
    return getattr(_load_app(), name)


def write_table(out: TextIO, title: str, record: dict[str, Any]) -> bool:
    """A ranked table of ``record["predictions"]``, or its error; True when it is an error.
    An answer below the confidence threshold says so, as the API's ``"uncertain": true`` does, and an
    answer about a photo unlike the model's training data, as ``"in_domain": false`` does."""
    out.write(f"\n{title}\n")
    if "error" in record:
        out.write(f"  error {record['code']}: {record['error']}\n")
        return True
    for rank, prediction in enumerate(record["predictions"], start=1):
        bar = "#" * round(prediction["probability"] * 30)
        out.write(f"  {rank}. {prediction['label']:<28} {prediction['probability']:7.2%}  {bar}\n")
    if record.get("in_domain") is False:
        out.write("  out of domain: this doesn't look like anything this model knows\n")
    if record.get("uncertain"):
        out.write("  uncertain: the top class is below the confidence threshold; a person should look\n")
    return False


def invoke(event_path: Path, out: TextIO) -> int:
    from localaws.context import LocalContext

    event = json.loads(event_path.read_text())
    result = entry_point_for(event)(event, LocalContext())
    out.write(json.dumps(result, indent=2) + "\n")
    return 0


def predict(images: list[Path], top_k: int, out: TextIO) -> int:
    from handler.contract import LOCAL_SOURCE

    answerer = _load_app().function.runtime.answerer
    answers = answerer.answer(
        [path.read_bytes() for path in images], top_k, LOCAL_SOURCE, request_deadline=False
    )
    failures = [
        write_table(out, str(path), answer.body) for path, answer in zip(images, answers, strict=True)
    ]
    return 1 if any(failures) else 0


# Folder names that say what a folder is for (a split, an export), not what its photos show.
GENERIC_FOLDERS = frozenset(
    {"train", "training", "data", "dataset", "datasets", "images", "photos", "exports", "export", "local"}
)


def model_name(data_dirs: list[Path]) -> str:
    """A name the dataset defends: its folder's or, for a folder called ``train``, ``data``... its
    parent's (``datasets/hymenoptera/train`` -> hymenoptera); refused when both are generic
    (``build/exports/local``): a model named ``local`` would be a guess."""
    for folder in data_dirs:
        real = folder.resolve()
        for part in (real, real.parent):
            if part.name and part.name.lower() not in GENERIC_FOLDERS:
                return part.name
    raise ValueError(
        f"{', '.join(map(str, data_dirs))} does not say what the photos are (a folder called "
        f"{data_dirs[0].resolve().name!r} in {data_dirs[0].resolve().parent.name!r}): name the model "
        "with --name"
    )


def train_model(args: argparse.Namespace, out: TextIO) -> int:
    """``train``: the weights found first, then a bad dataset or setting is a message, never a
    traceback."""
    from dataclasses import fields

    from layers.model import weights
    from training.dataset import DatasetError
    from training.train import Options, train

    # Every option the command line names (--epochs, --zoom, ...) is the Options field of that name.
    given = {f.name: getattr(args, f.name) for f in fields(Options) if f.name in vars(args)}
    try:
        options = Options(**{**given, "name": args.name or model_name(args.data_dir)})
    except ValueError as error:  # the settings' own checks (training.options)
        out.write(f"error: {error}\n")
        return 2
    try:
        print(weights.ensure(), file=sys.stderr)
        data = args.data_dir[0] if len(args.data_dir) == 1 else args.data_dir
        folder = args.out or Path("build") / "models" / options.name
        card = train(data, folder, options, test_dir=args.test_dir)["card"]
    except (DatasetError, weights.WeightsMissing) as error:
        out.write(f"error: {error}\n")
        return 2
    out.write(f"model written to {folder}\n{summary(card)}\n")
    return 0


def evaluate_model(args: argparse.Namespace, out: TextIO) -> int:
    """``evaluate``: the serving classifier on labelled photos, a report folder."""
    from handler import config
    from training.dataset import DatasetError
    from training.evaluate import FolderInUse, run

    model_dir = args.model_dir or config.read_settings().model_dir
    try:
        folder, report = run(args.data_dir, model_dir, args.out, precision=args.precision)
    except (FolderInUse, DatasetError) as error:
        out.write(f"error: {error}\n")
        return 2
    out.write(f"report written to {folder}\n{headline(report, args.data_dir.name)}\n")
    return 0


def summary(card: dict) -> str:
    """The card's headline: the test split's figures (never used to choose anything)."""
    split = "test" if "test" in card else "validation"
    line = headline(card[split], f"{split} split")
    if "int8" in card:
        line += f"; int8 top-1 agreement {card['int8']['top1_agreement']:.3f}"
    if "calibration" in card:
        fitted = card["calibration"]
        line += (
            f"\ncalibration: temperature {fitted['temperature']:g}; expected calibration error (test) "
            f"{fitted['ece_before']['test']:.3f} before, {fitted['ece_after']['test']:.3f} after"
        )
    return line


def headline(figures: dict, what: str) -> str:
    line = f"{what}: accuracy {figures['accuracy']:.3f}"
    if "accuracy_95ci" in figures:
        low, high = figures["accuracy_95ci"]
        line += f" (95 % CI {low:.3f}-{high:.3f})"
    line += f", balanced accuracy {figures['balanced_accuracy']:.3f}"
    if "roc_auc" in figures:
        line += f", ROC AUC {figures['roc_auc']:.3f}"
    return line + f" ({figures['images']} images)"


def check_set(args: argparse.Namespace, out: TextIO) -> int:
    """Write MODEL_DIR/check from a folder per class and/or ``--photo FILE=LABEL`` pairs."""
    from training import checkset

    photos = checkset.photos_in(args.photos) if args.photos else []
    for pair in args.photo:
        file, _, label = pair.rpartition("=")
        if not file or not label:
            print(f"--photo takes FILE=LABEL, not {pair!r}", file=sys.stderr)
            return 2
        photos.append((Path(file), label))
    try:
        document = checkset.write(
            args.model_dir, photos, args.source or "chosen by hand", args.expected_accuracy
        )
    except (checkset.CheckSetError, OSError) as error:
        print(f"imgrec check-set: {error}", file=sys.stderr)
        return 2
    accuracy = document["accuracy_when_recorded"]
    print(
        f"{len(document['photos'])} check photos in {args.model_dir / checkset.CHECK_DIR}; accuracy "
        + ", ".join(f"{precision} {value:.3f}" for precision, value in accuracy.items())
        + f"; the gate expects {document['expected_accuracy']:.3f} minus its tolerance",
        file=out,
    )
    return 0


def backfill(args: argparse.Namespace, out: TextIO) -> int:
    """Run the backfill; the summary (JSON) on stdout, progress on stderr; 1 if anything failed."""
    from dataclasses import asdict

    from devtools import backfill as bulk

    options = bulk.Options(
        args.url,
        batch_size=args.batch_size,
        workers=args.workers or bulk.Options.workers,
        force=args.force,
        endpoint_url=args.endpoint_url,
        out_dir=args.out,
        progress=not args.no_progress,
    )
    summary = bulk.run(options)
    out.write(json.dumps(asdict(summary), indent=2) + "\n")
    return 1 if summary.failed else 0


def dataset_export(args: argparse.Namespace, out: TextIO) -> int:
    """Captured predictions with feedback -> a data folder; the summary on stdout."""
    from devtools import capture_export

    try:
        summary = capture_export.export(
            args.url, args.out, endpoint_url=args.endpoint_url, include_anonymous=args.include_anonymous
        )
    except capture_export.ExportError as error:
        print(f"imgrec dataset export: {error}", file=sys.stderr)
        return 2
    capture_export.write_summary(summary, out)
    return 0


def compare_models(args: argparse.Namespace, out: TextIO) -> int:
    """Two model directories on the same photos: agreement, changed answers, accuracies."""
    from devtools import capture_export, compare
    from handler.recognition.model import ModelError
    from training.dataset import DatasetError

    try:
        result = compare.run(
            args.model_a,
            args.model_b,
            args.data,
            endpoint_url=args.endpoint_url,
            include_anonymous=args.include_anonymous,
        )
    except (compare.CompareError, capture_export.ExportError, DatasetError, ModelError) as error:
        print(f"imgrec compare: {error}", file=sys.stderr)
        return 2
    compare.print_result(result, out, args.json)
    return 0


def run_invoke(args: argparse.Namespace, out: TextIO) -> int:
    return invoke(args.event, out)


def run_predict(args: argparse.Namespace, out: TextIO) -> int:
    if args.model_dir:  # read by the function's settings, as Lambda's environment would set it
        os.environ["MODEL_DIR"] = str(args.model_dir.resolve())
    return predict(args.images, args.top_k, out)


def run_upload(args: argparse.Namespace, out: TextIO) -> int:
    from localaws.upload import upload

    record = upload(args.photo, args.api, args.timeout, out)
    return 1 if write_table(out, f"{args.photo} ({record.get('key', '')})", record) else 0


def run_rie(args: argparse.Namespace, out: TextIO) -> int:
    from localaws import runtime_api

    return runtime_api.serve(args.handler, args.port)


def run_serve(args: argparse.Namespace, out: TextIO) -> int:
    from localaws import serve

    return serve.run(args.port, args.host, args.stage, args.s3)


def run_rollout_demo(args: argparse.Namespace, out: TextIO) -> int:
    from devtools import rollout_demo

    return rollout_demo.run(args.model_dir, out)


def run_s3_demo(args: argparse.Namespace, out: TextIO) -> int:
    from localaws import s3_demo

    return s3_demo.run(args.folder, out)


def quiet_commands() -> None:
    """A command's output is its result: Powertools' info lines (``model ready``) and TensorFlow's
    C++ banners would land inside its table or progress bar. ``LOG_LEVEL=DEBUG`` keeps them."""
    from handler.config import debug_logging

    if debug_logging():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


DEFAULT_MODEL_DIR = "default: MODEL_DIR or build/model"
OTHER_ENDPOINT = "another S3 endpoint (moto: http://127.0.0.1:PORT)"


def parser() -> argparse.ArgumentParser:
    """Every sub-command, each bound to its function (``set_defaults(func=...)``)."""
    parser = argparse.ArgumentParser(prog="imgrec", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_local_commands, _bulk_commands, _model_commands, _data_commands):
        add(commands)
    return parser


def _local_commands(commands: argparse._SubParsersAction) -> None:
    """The function on this machine: an event, photos, the local API, an upload, the RIE, local S3."""
    run = commands.add_parser("invoke", help="run the matching entry point for an event file")
    run.add_argument("event", type=Path)
    run.set_defaults(func=run_invoke)
    classify = commands.add_parser("predict", help="classify image files and print a table")
    classify.add_argument("images", type=Path, nargs="+")
    classify.add_argument(
        "--top-k", type=int, default=5, help="classes per photo (at most the model's; default 5)"
    )
    classify.add_argument("--model-dir", type=Path, default=None, help=DEFAULT_MODEL_DIR)
    classify.set_defaults(func=run_predict)
    server = commands.add_parser("serve", help="local API on 127.0.0.1")
    server.add_argument("--port", type=int, default=3000)
    server.add_argument("--host", default="127.0.0.1", help="address to bind (keep it local)")
    server.add_argument("--stage", default=None, help="serve under /STAGE/ like API Gateway (e.g. prod)")
    server.add_argument(
        "--s3", action="store_true", help="enable uploads on a local moto S3 (dev dependency)"
    )
    server.set_defaults(func=run_serve, keeps_stdout=True)
    send = commands.add_parser("upload", help="upload a large photo through /uploads and wait for its result")
    send.add_argument("photo", type=Path)
    send.add_argument("--api", default="http://127.0.0.1:3000/", help="the API's base URL (ApiUrl output)")
    send.add_argument("--timeout", type=float, default=120)
    send.set_defaults(func=run_upload)
    rie = commands.add_parser("rie", help="run awslambdaric against a local Lambda Runtime API")
    rie.add_argument("--handler", default="handler.app.api_handler")
    rie.add_argument("--port", type=int, default=9000)
    rie.set_defaults(func=run_rie, keeps_stdout=True)
    demo = commands.add_parser("s3-demo", help="upload photos to a local moto S3 and run s3_handler")
    demo.add_argument("folder", type=Path, nargs="?", default=DEFAULT_PHOTOS)
    demo.set_defaults(func=run_s3_demo)


def _bulk_commands(commands: argparse._SubParsersAction) -> None:
    """A whole S3 prefix through the bulk worker."""
    fill = commands.add_parser("backfill", help="classify every object under an S3 prefix (bulk worker)")
    fill.add_argument("url", help="s3://BUCKET/PREFIX")
    fill.add_argument("--batch-size", type=int, default=50, help="objects per worker invocation")
    fill.add_argument("--workers", type=int, default=None, help="worker processes (default: cores - 1)")
    fill.add_argument("--force", action="store_true", help="classify again what this model already answered")
    fill.add_argument("--endpoint-url", default=None, help=OTHER_ENDPOINT)
    fill.add_argument(
        "--out", type=Path, default=None, help="report folder (default: build/backfill/BUCKET/TIME)"
    )
    fill.add_argument("--no-progress", action="store_true", help="no progress bar")
    fill.set_defaults(func=backfill)


def _model_commands(commands: argparse._SubParsersAction) -> None:
    """Training, evaluating, the gate's photos and its rehearsal."""
    from training.options import command_line_fields

    learn = commands.add_parser("train", help="train a classifier of your own classes (folder per class)")
    learn.add_argument(
        "data_dir",
        type=Path,
        nargs="+",
        help="one sub-folder of photos per class; several folders merge (same-named classes join)",
    )
    learn.add_argument(
        "--out", type=Path, default=None, help="model directory to write (default: build/models/NAME)"
    )
    learn.add_argument(
        "--name",
        default=None,
        help="model name (default: the dataset's folder name; a folder called train, data... takes "
        "its parent's)",
    )
    for flag, kind, default, text in command_line_fields():  # training.options: defined once
        if kind is bool:  # --feature-cache / --no-feature-cache
            learn.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            learn.add_argument(flag, type=kind, default=default, help=f"{text} (default: {default})")
    learn.add_argument(
        "--test-dir", type=Path, default=None, help="labelled photos to test on instead of a split"
    )
    learn.add_argument("--quantize", choices=["int8"], default=None, help="add a full-integer int8 .tflite")
    learn.add_argument("--min-confidence", type=float, default=None, help="below it answers say uncertain")
    learn.set_defaults(func=train_model)
    judge = commands.add_parser("evaluate", help="evaluate the serving classifier on labelled photos")
    judge.add_argument("data_dir", type=Path, help="one sub-folder per class (label or WordNet id)")
    judge.add_argument("--model-dir", type=Path, default=None, help=DEFAULT_MODEL_DIR)
    judge.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report folder, new or empty (default: a new MODEL_DIR/evaluations/DATA-yyyymmddTHHMMSSZ)",
    )
    judge.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    judge.set_defaults(func=evaluate_model)
    checks = commands.add_parser("check-set", help="the check photos of the pre-traffic quality gate")
    checks.add_argument("model_dir", type=Path, help="the model directory to write check/ into")
    checks.add_argument("photos", type=Path, nargs="?", help="a folder per class of labelled photos")
    checks.add_argument("--photo", action="append", default=[], help="FILE=LABEL (repeatable)")
    checks.add_argument("--expected-accuracy", type=float, default=None, help="default: measured here")
    checks.add_argument("--source", default=None, help="where the photos come from (recorded)")
    checks.set_defaults(func=check_set)
    demo = commands.add_parser("rollout-demo", help="the gate on good, broken and costly builds")
    demo.add_argument("--model-dir", type=Path, default=None, help=DEFAULT_MODEL_DIR)
    demo.set_defaults(func=run_rollout_demo)


def _data_commands(commands: argparse._SubParsersAction) -> None:
    """Data folders from captures, and two models compared on the same photos."""
    data = commands.add_parser("dataset", help="data folders from what the service captured")
    data_commands = data.add_subparsers(dest="dataset_command", required=True)
    export = data_commands.add_parser("export", help="captures with feedback -> DIR/<label>/, review.csv")
    export.add_argument("url", help="s3://BUCKET/PREFIX of the captures (any model, version, date below)")
    export.add_argument("--out", type=Path, required=True, help="new or empty folder, or an earlier export")
    export.add_argument("--endpoint-url", default=None, help=OTHER_ENDPOINT)
    export.add_argument(
        "--include-anonymous",
        action="store_true",
        help="also use corrections without an authenticated caller (anonymous, or no caller recorded)",
    )
    export.set_defaults(func=dataset_export)
    versus = commands.add_parser("compare", help="two model directories on the same photos")
    versus.add_argument("model_a", type=Path, help="model directory A (e.g. the one serving)")
    versus.add_argument("model_b", type=Path, help="model directory B (e.g. the candidate)")
    versus.add_argument(
        "data", help="a folder per class of labelled photos, or s3://BUCKET/PREFIX of captures"
    )
    versus.add_argument("--json", action="store_true", help="print the comparison as JSON")
    versus.add_argument("--endpoint-url", default=None, help=OTHER_ENDPOINT)
    versus.add_argument(
        "--include-anonymous",
        action="store_true",
        help="captures: also take corrections without an authenticated caller as the truth",
    )
    versus.set_defaults(func=compare_models)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    results, environment = sys.stdout, dict(os.environ)
    if not getattr(args, "keeps_stdout", False):
        quiet_commands()
        sys.stdout = sys.stderr  # Powertools logs/metrics to stderr; results alone on stdout
    try:
        return args.func(args, results)
    finally:
        sys.stdout = results
        # What the command set for itself (quiet logs, MODEL_DIR) ends with it: a caller in the same
        # process (a test, a notebook) and the processes it starts later see their own environment.
        if os.environ != environment:
            os.environ.clear()
            os.environ.update(environment)


if __name__ == "__main__":
    sys.exit(main())
