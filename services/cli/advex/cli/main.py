"""The `advex` command."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import grpc

from advex.cli import compare, gate, render
from advex.cli.client import (
    KINDS,
    TERMINAL,
    CliError,
    Gateway,
    GatewayUnreachable,
    parse_attack,
    parse_budgets,
    parse_suite,
    parse_classes,
    parse_counts,
    parse_trigger,
    save_poisoned_data,
    upload,
    watch,
)
from advex.core import fetch, poison_specs
from advex.core.attack_specs import ATTACKS, SUITES
from advex.core.errors import AdvexError
from advex.v1 import artifact_pb2, evasion_pb2, evaluation_pb2, poisoning_pb2

DEMO_BUDGETS = [0.05, 0.1, 0.2, 0.3]
# The poisoning demo: issue 7's reference, as a dose-response.
DEMO_POISON_COUNTS = [1, 2, 5, 10, 20]


_EPOCH_COUNT = re.compile(r":? *epoch \d+/\d+$")


def _wait(gateway: Gateway, name: str, show_progress: bool) -> evaluation_pb2.Evaluation:
    """Follows an evaluation to its end, with a progress bar on stderr (on a
    terminal; elsewhere, such as a CI log, one line per stage)."""
    bar = None
    last = None
    stage_lines = show_progress and not sys.stderr.isatty()
    logged = None
    try:
        for evaluation in watch(gateway, name):
            status = f"{render.state_name(evaluation.state)}: {evaluation.progress.stage}"
            # A training stage counts its epochs ("...: epoch 3/30"): one
            # line per training, not per epoch.
            stage = _EPOCH_COUNT.sub("", status)
            if stage_lines and stage != logged:
                logged = stage
                progress = evaluation.progress
                percent = 100.0 * progress.done / progress.total if progress.total else 0.0
                print(f"advex: {name} {percent:5.1f}% {status}", file=sys.stderr)
            last = evaluation
            if bar is None:
                bar = render.progress_bar(evaluation.progress.total, "evaluating", enabled=show_progress)
            bar.total = evaluation.progress.total
            bar.set_postfix_str(status, refresh=False)
            bar.update(evaluation.progress.done - bar.n)
    finally:
        if bar is not None:
            bar.close()
    if last is None or last.state not in TERMINAL:
        raise CliError(f"the gateway stopped streaming before {name} ended; run `advex watch {name}` again")
    return last


def _finish(gateway: Gateway, evaluation: evaluation_pb2.Evaluation, args) -> int:
    """Prints the report of an ended evaluation (or why there is none), then
    holds it to --fail-under."""
    if evaluation.state != evaluation_pb2.EVALUATION_STATE_SUCCEEDED:
        if args.json:
            render.print_json(render.to_dict(evaluation))
        else:
            print(render.evaluation_line(evaluation))
        return 1
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=evaluation.name)).report
    if args.json:
        render.print_json(render.to_dict(report))
    else:
        print(render.report_table(report))
    return _gate(report, _thresholds(args))


# The exit code when the report falls short of a --fail-under threshold.
EXIT_BELOW_THRESHOLD = 3


def _thresholds(args) -> list[gate.Threshold]:
    return [gate.parse_threshold(text) for text in getattr(args, "fail_under", None) or []]


def _gate(report, thresholds: list[gate.Threshold]) -> int:
    """0 when every threshold holds; EXIT_BELOW_THRESHOLD, naming each one
    that failed on stderr, otherwise."""
    if not thresholds:
        return 0
    outcomes = gate.check(report, thresholds)
    for outcome in outcomes:
        print(f"advex: {outcome.line()}", file=sys.stderr)
    failed = [o for o in outcomes if not o.passed]
    checks = f"{len(outcomes)} threshold check{'s' if len(outcomes) != 1 else ''}"
    if failed:
        print(f"advex: {len(failed)} of {checks} FAILED (exit code {EXIT_BELOW_THRESHOLD})", file=sys.stderr)
        return EXIT_BELOW_THRESHOLD
    print(f"advex: every one of {checks} holds", file=sys.stderr)
    return 0


def cmd_upload(gateway: Gateway, args) -> int:
    path = Path(args.path)
    bar = render.progress_bar(path.stat().st_size if path.exists() else 0, f"upload {path.name}", "B", not args.json)
    with bar:
        artifact = upload(gateway, args.kind, path, args.name or "", bar.update)
    if args.json:
        render.print_json(render.to_dict(artifact))
    else:
        print(f"{artifact.name}  READY  {artifact.size_bytes} bytes  sha256 {artifact.sha256}")
    return 0


def cmd_evaluate(gateway: Gateway, args) -> int:
    if not args.attack and not args.suite:
        raise CliError("give --attack NAME[:key=value,...] (repeatable), --suite standard, or both")
    attacks = [spec for text in args.attack for spec in parse_attack(text, args.eps)]
    if args.eps and any(not a.HasField("eps") for a in attacks):
        print(
            "note: cw has no budget and runs once, unbounded, whatever --eps says; "
            "give cw:eps=E to count only its examples within E",
            file=sys.stderr,
        )
    if args.suite:
        attacks += parse_suite(args.suite, args.eps, args.suite_norm)
    _warn_of_trivial_budgets(attacks, args.clip_min, args.clip_max)
    request = evaluation_pb2.CreateEvaluationRequest(
        model=args.model,
        evasion=evasion_pb2.EvasionSpec(
            dataset=args.dataset, attacks=attacks, max_samples=args.max_samples,
            keep_adversarial=args.keep_adversarial, seed=args.seed,
        ),
        clip_min=args.clip_min,
        clip_max=args.clip_max,
        display_name=args.name or "",
    )
    return _create(gateway, request, args)


def _warn_of_trivial_budgets(attacks, clip_min: float, clip_max: float) -> None:
    """A word on stderr for L-inf budgets of the whole clip range or more:
    every result there is trivial (the report warns too)."""
    from advex.core.attack_specs import resolve
    from advex.core.errors import AdvexError

    wide = set()
    for spec in attacks:
        try:
            resolved = resolve(spec)
        except AdvexError:
            continue  # the gateway answers bad specs with the reason
        if resolved.bounded and resolved.norm == "inf" and resolved.eps >= clip_max - clip_min:
            wide.add(resolved.eps)
    if wide:
        print(
            f"advex: warning: L-inf eps {', '.join(f'{e:g}' for e in sorted(wide))} covers the whole input range "
            f"({clip_min:g} to {clip_max:g}): an attack may replace any image by any other there, so those results "
            "are trivial; give eps in the data's scale",
            file=sys.stderr,
        )


def _create(gateway: Gateway, request: evaluation_pb2.CreateEvaluationRequest, args) -> int:
    """Creates the evaluation; with --wait (which --fail-under implies),
    follows it and prints its report."""
    _thresholds(args)  # a malformed threshold fails before any work is queued
    evaluation = gateway.evaluations.CreateEvaluation(request).evaluation
    if not args.wait and not args.fail_under:
        if args.json:
            render.print_json(render.to_dict(evaluation))
        else:
            print(f"{evaluation.name}  QUEUED  (follow it with `advex watch {evaluation.name}`)")
        return 0
    return _finish(gateway, _wait(gateway, evaluation.name, not args.json), args)


def cmd_poison(gateway: Gateway, args) -> int:
    counts, fractions = parse_counts(args.count)
    training = poisoning_pb2.TrainingRecipe(optimizer=args.optimizer or "", fine_tune=args.fine_tune)
    for field, value in (
        ("epochs", args.epochs), ("batch_size", args.batch_size), ("learning_rate", args.learning_rate)
    ):
        if value is not None:
            setattr(training, field, value)
    spec = poisoning_pb2.PoisoningSpec(
        training_dataset=args.train,
        test_dataset=args.test,
        kind=args.kind,
        source_classes=parse_classes(args.source),
        target_class=args.target,
        counts=counts,
        fractions=fractions,
        training=training,
        seed=args.seed,
    )
    if args.trigger:
        spec.trigger.CopyFrom(parse_trigger(args.trigger))
    if args.perturb:
        (perturbation,) = parse_attack(args.perturb, [])
        spec.perturbation.CopyFrom(perturbation)
    request = evaluation_pb2.CreateEvaluationRequest(
        model=args.model, poisoning=spec, clip_min=args.clip_min, clip_max=args.clip_max, display_name=args.name or ""
    )
    return _create(gateway, request, args)


def cmd_poisoned_data(gateway: Gateway, args) -> int:
    stream = gateway.evaluations.StreamPoisonedData(
        evaluation_pb2.StreamPoisonedDataRequest(name=args.evaluation, poison_count=args.count)
    )
    samples, poisoned = save_poisoned_data((r.piece for r in stream), Path(args.out))
    if args.json:
        render.print_json({"path": args.out, "samples": samples, "poisoned": poisoned})
    else:
        print(f"wrote {args.out}: {samples} training images, {poisoned} poisoned (arrays x, y, original_y, poisoned)")
    return 0


def cmd_download(gateway: Gateway, args) -> int:
    """Any READY artifact (a kept adversarial set, a poisoned model, ...) to a file, verified."""
    url = gateway.artifacts.GetDownloadUrl(artifact_pb2.GetDownloadUrlRequest(name=args.artifact))
    try:
        path = fetch.fetch_to(
            fetch.Location(url.url, url.sha256, url.size_bytes), args.out, what=args.artifact, max_bytes=1 << 62
        )
    except AdvexError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        render.print_json({"path": str(path), "size_bytes": url.size_bytes, "sha256": url.sha256})
    else:
        print(f"wrote {path}: {url.size_bytes} bytes, SHA-256 {url.sha256} (verified)")
    return 0


def cmd_watch(gateway: Gateway, args) -> int:
    return _finish(gateway, _wait(gateway, args.evaluation, not args.json), args)


def cmd_status(gateway: Gateway, args) -> int:
    evaluation = gateway.evaluations.GetEvaluation(evaluation_pb2.GetEvaluationRequest(name=args.evaluation)).evaluation
    if args.json:
        render.print_json(render.to_dict(evaluation))
    else:
        print(render.evaluation_line(evaluation))
    return 0


def cmd_list(gateway: Gateway, args) -> int:
    def pages(call, field, **request):
        token = ""
        while True:
            response = call(page_size=args.page_size, page_token=token, **request)
            yield from getattr(response, field)
            token = response.next_page_token
            if not token or not args.all:
                return

    if args.what == "artifacts":
        items = list(
            pages(lambda **r: gateway.artifacts.ListArtifacts(artifact_pb2.ListArtifactsRequest(**r)), "artifacts")
        )
        if args.json:
            render.print_json([render.to_dict(a) for a in items])
        for a in [] if args.json else items:
            kind = artifact_pb2.ArtifactKind.Name(a.kind).removeprefix("ARTIFACT_KIND_").lower()
            state = artifact_pb2.ArtifactState.Name(a.state).removeprefix("ARTIFACT_STATE_")
            print(f"{a.name}  {kind:<8}  {state:<14}  {a.size_bytes:>10} B  {a.display_name}")
        return 0
    items = list(
        pages(lambda **r: gateway.evaluations.ListEvaluations(evaluation_pb2.ListEvaluationsRequest(**r)), "evaluations")
    )
    if args.json:
        render.print_json([render.to_dict(e) for e in items])
    for e in [] if args.json else items:
        print(render.evaluation_line(e))
    return 0


def cmd_gate(gateway: Gateway, args) -> int:
    thresholds = _thresholds(args)
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=args.evaluation)).report
    if args.json:
        render.print_json(render.to_dict(report))
    else:
        print(render.report_table(report))
    return _gate(report, thresholds)


def cmd_report(gateway: Gateway, args) -> int:
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=args.evaluation)).report
    if args.html:
        return _write_page(gateway, report, Path(args.html), args.json)
    import json

    text = json.dumps(render.to_dict(report), indent=2) + "\n" if args.json else render.report_table(report) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _write_page(gateway: Gateway, report, path: Path, as_json: bool) -> int:
    """The report's HTML page (an artifact), downloaded and verified."""
    if not report.HasField("html_page"):
        raise CliError(
            f"{report.name} has no HTML page: it was made before pages existed, or rendering it failed "
            "(the gateway's log says why); `advex report` without --html still prints the numbers"
        )
    url = gateway.artifacts.GetDownloadUrl(artifact_pb2.GetDownloadUrlRequest(name=report.html_page.name))
    try:
        fetch.fetch_to(fetch.Location(url.url, url.sha256, url.size_bytes), path, what="the report page",
                       max_bytes=1 << 40)
    except AdvexError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        render.print_json({"path": str(path), "size_bytes": url.size_bytes, "sha256": url.sha256})
    else:
        print(f"wrote {path}: the report page of {report.name}, {url.size_bytes} bytes (open it in a browser)")
    return 0


def cmd_compare(gateway: Gateway, args) -> int:
    import tempfile

    import numpy as np

    reports = [
        gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=name)).report
        for name in (args.a, args.b)
    ]
    compare.check_comparable(*reports)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="advex-compare-") as scratch:
        for label, report in zip("AB", reports, strict=True):
            if not report.evasion.HasField("outcomes"):
                raise CliError(
                    f"{label} ({report.name}) kept no per-sample outcomes: it was made before outcomes were kept, or "
                    "samples x (attacks + 1) is above 16,777,216; evaluate it again (with --max-samples if it is huge)"
                )
            url = gateway.artifacts.GetDownloadUrl(artifact_pb2.GetDownloadUrlRequest(name=report.evasion.outcomes.name))
            path = Path(scratch) / f"{label}.npz"
            try:
                fetch.fetch_to(fetch.Location(url.url, url.sha256, url.size_bytes), path, what=f"{label}'s outcomes",
                               max_bytes=64 << 20)
            except AdvexError as exc:
                raise CliError(str(exc)) from None
            with np.load(path, allow_pickle=False) as npz:
                outcomes.append(compare.unpack(npz))
    found = compare.rows(*reports, *outcomes)
    if args.html:
        Path(args.html).write_text(compare.page(*reports, found), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        render.print_json({"a": reports[0].name, "b": reports[1].name, "rows": [r.to_dict() for r in found]})
    else:
        print(compare.table(*reports, found))
    return 0


def cmd_cancel(gateway: Gateway, args) -> int:
    evaluation = gateway.evaluations.CancelEvaluation(
        evaluation_pb2.CancelEvaluationRequest(name=args.evaluation)
    ).evaluation
    if args.json:
        render.print_json(render.to_dict(evaluation))
    else:
        print(render.evaluation_line(evaluation))
    return 0


def cmd_demo(gateway: Gateway, args) -> int:
    # Training the demo model (first run) imports TensorFlow, whose C++
    # start-up chatter is not for the user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from advex.cli import digits

    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
    if not digits.demo_files_ready(Path(args.cache_dir)):
        say(f"demo: training a small CNN on scikit-learn's bundled digits (once; kept in {args.cache_dir}) ...")
    model_path, data_path = digits.demo_files(Path(args.cache_dir))
    say(f"demo: model {model_path}, held-out digits {data_path}")
    model = _upload_quietly(gateway, "model", model_path, not args.json)
    dataset = _upload_quietly(gateway, "dataset", data_path, not args.json)
    if args.poisoning:
        train = _upload_quietly(gateway, "dataset", digits.demo_training_file(Path(args.cache_dir)), not args.json)
        spec = poisoning_pb2.PoisoningSpec(
            training_dataset=train.name,
            test_dataset=dataset.name,
            kind="dirty",
            trigger=poisoning_pb2.TriggerSpec(trigger="square", size=2, position="bottom-right"),
            source_classes=[1],
            target_class=7,
            counts=DEMO_POISON_COUNTS,
        )
        evaluation = gateway.evaluations.CreateEvaluation(
            evaluation_pb2.CreateEvaluationRequest(
                model=model.name, poisoning=spec, clip_min=0.0, clip_max=1.0, display_name="poisoning demo"
            )
        ).evaluation
        say(
            f"demo: {evaluation.name} queued: a 2x2 white square on 1, 2, 5, 10 and 20 training images of class 1 "
            "relabelled 7; a clean baseline and 5 poisoned models, 30 epochs each"
        )
        return _finish(gateway, _wait(gateway, evaluation.name, not args.json), args)
    attacks = [spec for text in ("fgsm", "pgd:norm=inf") for spec in parse_attack(text, DEMO_BUDGETS)]
    evaluation = gateway.evaluations.CreateEvaluation(
        evaluation_pb2.CreateEvaluationRequest(
            model=model.name,
            # A fixed seed: the demo prints the same numbers as the README.
            evasion=evasion_pb2.EvasionSpec(dataset=dataset.name, attacks=attacks, seed=0),
            clip_min=0.0,
            clip_max=1.0,
            display_name="demo",
        )
    ).evaluation
    say(f"demo: {evaluation.name} queued: FGSM and PGD (L-inf) at eps {', '.join(map(str, DEMO_BUDGETS))}")
    return _finish(gateway, _wait(gateway, evaluation.name, not args.json), args)


def _upload_quietly(gateway: Gateway, kind: str, path: Path, show: bool) -> artifact_pb2.Artifact:
    with render.progress_bar(path.stat().st_size, f"upload {path.name}", "B", show) as bar:
        return upload(gateway, kind, path, path.name, bar.update)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advex",
        description="Evaluate how robust a Keras image classifier is to adversarial attack.",
    )
    gateway_help = "gateway address (default $ADVEX_GATEWAY_ADDR or 127.0.0.1:50051)"
    parser.add_argument("--gateway", help=gateway_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON only, on stdout")
    # Also after the subcommand (`advex list --gateway X`); SUPPRESS keeps
    # a --gateway given before it when none comes after.
    common.add_argument("--gateway", default=argparse.SUPPRESS, help=gateway_help)
    # What every kind of evaluation request takes.
    evaluation = argparse.ArgumentParser(add_help=False, parents=[common])
    evaluation.add_argument("--clip-min", type=float, default=0.0, help="smallest valid input value (default 0)")
    evaluation.add_argument("--clip-max", type=float, default=1.0, help="largest valid input value (default 1)")
    evaluation.add_argument("--name", help="display name")
    evaluation.add_argument("--wait", action="store_true", help="follow progress and print the report")
    evaluation.add_argument(
        "--fail-under", action="append", default=[], metavar="THRESHOLD",
        help=f"after the report, exit with code {EXIT_BELOW_THRESHOLD} unless it holds (repeatable; implies --wait): "
        f"METRIC[@SELECTOR]=VALUE, or <=VALUE for numbers that must stay low; {gate.EXAMPLES}",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="run the whole mesh in the foreground (Ctrl-C stops)")

    p = sub.add_parser(
        "upload", parents=[common], help="upload a model (.keras), dataset (.npz) or trigger pattern (.npz)"
    )
    p.add_argument("kind", choices=list(KINDS))
    p.add_argument("path")
    p.add_argument("--name", help="display name (default: the file name)")
    p.set_defaults(func=cmd_upload)

    p = sub.add_parser("evaluate", parents=[evaluation], help="evaluate a model on a dataset under attacks")
    p.add_argument("--model", required=True, help="artifact name of the model (artifacts/<id>)")
    p.add_argument("--dataset", required=True, help="artifact name of the dataset")
    p.add_argument(
        "--attack",
        action="append",
        default=[],
        help="NAME[:key=value,...], e.g. fgsm:eps=0.1 or pgd:eps=0.1,steps=40,norm=inf; any attack takes "
        "target=K|random|least_likely|most_likely to make it targeted; attacks: " + "; ".join(
            f"{a.name} ({a.description}; keys: "
            + ", ".join(("eps" if a.budget == "required" else "eps (optional)", "norm")
                        + tuple(f"{p.key}={p.shown_default()}" for p in a.params))
            + ")"
            for a in ATTACKS.values()
        ),
    )
    p.add_argument(
        "--eps", type=parse_budgets, action="extend", default=[],
        help="budgets for attacks given without eps and for --suite: a value (repeatable), or a range "
        "START:STOP:COUNT of COUNT evenly spaced values, e.g. 0.01:0.3:10",
    )
    p.add_argument(
        "--suite", choices=list(SUITES),
        help="; ".join(f"{s.name}: {s.description}" for s in SUITES.values()),
    )
    p.add_argument("--suite-norm", default="inf", choices=["inf", "2"], help="the norm of the suite's budgets")
    p.add_argument(
        "--seed", type=int,
        help="seeds the attacks' random draws (default: derived from the evaluation's id); "
        "the same seed gives the same results",
    )
    p.add_argument(
        "--keep-adversarial", action="store_true",
        help="store each attack's adversarial examples as a dataset artifact, listed in the report",
    )
    p.add_argument("--max-samples", type=int, default=0, help="evaluate only the first N samples")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "poison",
        parents=[evaluation],
        help="backdoor-poison a training set, train the model's architecture on it (and a clean baseline), measure",
    )
    p.add_argument("--model", required=True, help="artifact name of the model: its architecture is trained")
    p.add_argument("--train", required=True, help="artifact name of the training dataset")
    p.add_argument("--test", required=True, help="artifact name of the test dataset")
    p.add_argument(
        "--trigger",
        help="NAME[:key=value,...], e.g. square:size=2,pos=bottom-right, checker:size=3,pos=2,2, "
        "pattern:pattern=artifacts/<id>, blend:alpha=0.1,seed=3; triggers: "
        + "; ".join(f"{k} ({v})" for k, v in poison_specs.TRIGGERS.items()),
    )
    p.add_argument("--source", default="all", help="source classes: a list like 1 or 1,2,3, or all (but the target)")
    p.add_argument("--target", type=int, required=True, help="the class the backdoor sends images to")
    p.add_argument(
        "--count", required=True,
        help="images to poison, one model per value: 5,10,20; a value below 1 (0.05) is a share of the pool",
    )
    p.add_argument(
        "--kind", default="dirty", choices=list(poison_specs.KINDS),
        help="; ".join(f"{k}: {v}" for k, v in poison_specs.KINDS.items()),
    )
    p.add_argument("--perturb", help="clean kind: perturb the poisoned images first, e.g. pgd:eps=0.3,steps=10")
    p.add_argument("--epochs", type=int, help=f"default {poison_specs.DEFAULT_EPOCHS}")
    p.add_argument("--batch-size", type=int, help=f"default {poison_specs.DEFAULT_BATCH_SIZE}")
    p.add_argument("--learning-rate", type=float, help=f"default {poison_specs.DEFAULT_LEARNING_RATE:g}")
    p.add_argument("--optimizer", choices=list(poison_specs.OPTIMIZERS), help="default adam")
    p.add_argument("--fine-tune", action="store_true", help="start from the uploaded weights instead of fresh ones")
    p.add_argument("--seed", type=int, default=0, help="chooses the images and the initialisation (default 0)")
    p.set_defaults(func=cmd_poison)

    p = sub.add_parser(
        "poisoned-data", parents=[common], help="download one count's poisoned training set of a poisoning evaluation"
    )
    p.add_argument("evaluation", help="evaluations/<id>")
    p.add_argument("--count", type=int, required=True, help="one of the evaluation's poison counts")
    p.add_argument("--out", required=True, help="the .npz to write (x, y, original_y, poisoned)")
    p.set_defaults(func=cmd_poisoned_data)

    p = sub.add_parser("download", parents=[common], help="download an artifact (e.g. kept adversarial examples)")
    p.add_argument("artifact", help="artifacts/<id>")
    p.add_argument("-o", "--out", required=True, help="the file to write")
    p.set_defaults(func=cmd_download)

    for name, func, text in (
        ("watch", cmd_watch, "follow an evaluation to its end, then print its report"),
        ("status", cmd_status, "show an evaluation's state and progress"),
        ("cancel", cmd_cancel, "cancel an evaluation"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("evaluation", help="evaluations/<id>")
        p.set_defaults(func=func)

    p = sub.add_parser("list", parents=[common], help="list evaluations (default) or artifacts, newest first")
    p.add_argument("what", nargs="?", choices=["evaluations", "artifacts"], default="evaluations")
    p.add_argument("--page-size", type=int, default=50)
    p.add_argument("--all", action="store_true", help="follow page tokens to the end")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "gate", parents=[common],
        help=f"print a finished evaluation's report and exit with code {EXIT_BELOW_THRESHOLD} unless every "
        "--fail-under threshold holds",
    )
    p.add_argument("evaluation", help="evaluations/<id>")
    p.add_argument(
        "--fail-under", action="append", required=True, metavar="THRESHOLD",
        help=f"METRIC[@SELECTOR]=VALUE, or <=VALUE for numbers that must stay low (repeatable); {gate.EXAMPLES}",
    )
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser(
        "compare", parents=[common],
        help="is model B more robust than A? two evasion evaluations of the same samples and attacks, budget by "
        "budget, with 95% intervals and McNemar's paired test",
    )
    p.add_argument("a", help="evaluations/<id> of model A")
    p.add_argument("b", help="evaluations/<id> of model B")
    p.add_argument("--html", metavar="FILE", help="also write the comparison as a self-contained HTML page")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", parents=[common], help="print (or --out write) the report of a finished evaluation")
    p.add_argument("evaluation", help="evaluations/<id>")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.add_argument("--html", metavar="FILE", help="instead, download the report's self-contained HTML page to FILE")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "demo", parents=[common], help="train a digits CNN, upload it, evaluate FGSM+PGD (or --poisoning), print the table"
    )
    p.add_argument(
        "--poisoning", action="store_true",
        help="instead: a backdoor dose-response (2x2 square, class 1 -> 7, 1..20 poisoned images) with a clean baseline",
    )
    p.add_argument("--cache-dir", default=os.path.join("var", "demo"), help="where the trained demo model is cached")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        from advex.cli.mesh import up

        return up()
    try:
        gateway = Gateway.connect(args.gateway)
        try:
            return args.func(gateway, args)
        finally:
            gateway.close()
    except GatewayUnreachable as exc:
        # A gRPC error like any other (UNAVAILABLE), not a usage problem.
        print(f"advex: {exc}", file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"advex: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"advex: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`advex list | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
