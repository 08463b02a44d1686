"""Command line: ``python3 -m promote <command> ...`` (run with
``PYTHONPATH=.github/promote``). ``--help`` on each command lists its flags.

Exit codes: 0 promoted / unchanged / done, 1 rolled back (the candidate was
refused and traffic is back on the previous revision), 2 failed with no safe
state reached (first deploy failed, or a rollback did not converge), 64 bad
usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from typing import Optional

from . import FUNCTIONS, manifest
from .changes import changed_functions, git_diff_since, plan
from .cluster import HelmCluster
from .gates import GateConfig, Prometheus, evaluate
from .rollout import (CANDIDATE_TAG, Decision, RealClock, Rollout, RolloutConfig, RolloutFailed,
                      abort_candidate, commit_of, manual_rollback)
from .load import HttpLoad, LoadConfig
from .smoke import SMOKE_EXAM_YEAR, SmokeConfig, make_smoke_test
from .summary import as_json, markdown

EXIT = {Decision.PROMOTED: 0, Decision.UNCHANGED: 0, Decision.ROLLED_BACK: 1, Decision.FAILED: 2}
ZERO_SHA = "0" * 40


def _github_output(**values: str) -> None:
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            for k, v in values.items():
                fh.write(f"{k}={v}\n")


def _step_summary(text: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def _steps(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"steps must be comma-separated integers, got {text!r}") from exc


def _prometheus(args: argparse.Namespace) -> Prometheus:
    token = os.environ.get("PROMETHEUS_BEARER_TOKEN")
    return Prometheus(args.prometheus_url, headers={"Authorization": f"Bearer {token}"} if token else None)


def _gate(args: argparse.Namespace) -> GateConfig:
    return GateConfig(max_error_ratio=args.max_error_ratio, max_p99_seconds=args.max_p99_seconds,
                      window=args.window, min_requests=args.min_requests, extra_matchers=args.extra_matchers,
                      revision_label=args.revision_label)


def _cluster(args: argparse.Namespace) -> HelmCluster:
    return HelmCluster(args.namespace, args.release, args.chart, commit=args.commit)


def cmd_changed(args: argparse.Namespace) -> int:
    if args.all:
        fns = list(FUNCTIONS)
    elif args.only is not None:
        wanted = [f.strip() for f in args.only.split(",") if f.strip()]
        unknown = sorted(set(wanted) - set(FUNCTIONS))
        if unknown or not wanted:
            print(f"unknown function(s) {unknown or args.only!r}; choose from {', '.join(FUNCTIONS)}", file=sys.stderr)
            return 64
        fns = [f for f in FUNCTIONS if f in wanted]
    elif args.files:
        with open(args.files, encoding="utf-8") as fh:
            fns = changed_functions(fh)
    elif not args.base or args.base == ZERO_SHA:
        fns = list(FUNCTIONS)  # new branch or no known base: everything
    else:
        out = subprocess.run(["git", "diff", "--name-only", args.base, args.head], capture_output=True, text=True,
                             check=True).stdout
        fns = changed_functions(out.splitlines())
    print(json.dumps(fns))
    _github_output(functions=json.dumps(fns), any="true" if fns else "false")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    serving: dict[str, Optional[str]] = {}
    for fn in FUNCTIONS:
        try:
            serving[fn] = cluster.get(fn).stable_revision()
        except RolloutFailed as exc:
            if "NotFound" not in str(exc):
                raise
            serving[fn] = None
    reasons = plan(serving, git_diff_since(args.head))
    for fn, reason in reasons.items():
        print(f"{fn}: {reason}", file=sys.stderr)
    fns = list(reasons)
    print(json.dumps(fns))
    _github_output(functions=json.dumps(fns), any="true" if fns else "false")
    _step_summary("| function | serving | needs rollout |\n|---|---|---|\n" + "\n".join(
        f"| `{fn}` | `{serving[fn] or '-'}` | {reasons.get(fn, 'no: up to date')} |" for fn in FUNCTIONS))
    return 0


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", required=True)
    p.add_argument("--release", default="exam-results")
    p.add_argument("--chart", default="knative/exam-results")
    p.add_argument("--commit", default=os.environ.get("GITHUB_SHA"),
                   help="commit of --chart, recorded as the Helm revision description chart@<commit> "
                        "(default: $GITHUB_SHA)")


def _add_gate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prometheus-url", required=True)
    p.add_argument("--max-error-ratio", type=float, required=True, help="5xx share above which a check fails")
    p.add_argument("--max-p99-seconds", type=float, required=True)
    p.add_argument("--window", default="2m", help="PromQL rate window of each check")
    p.add_argument("--min-requests", type=float, default=1.0,
                   help="fewer requests than this in the window fail the check (no data is never a pass)")
    p.add_argument("--extra-matchers", default="", help='extra label matchers, e.g. namespace="exam-results"')
    p.add_argument("--revision-label", default="kn_revision_name",
                   help="series label holding the Knative revision name (relabeled from the pod label "
                        "serving.knative.dev/revision)")


def _stable_urls(cluster: HelmCluster, function: str) -> dict[str, str]:
    """The other functions' Service URLs (smoke tests and synthetic load use them)."""
    stable = {}
    for fn in FUNCTIONS:
        if fn != function:
            try:
                url = cluster.get(fn).url
            except RolloutFailed:
                url = None
            if url:
                stable[fn] = url
    return stable


def cmd_rollout(args: argparse.Namespace) -> int:
    cfg = RolloutConfig(function=args.function, suffix=args.suffix, digest=args.digest, steps=args.steps,
                        gate=_gate(args), bake_seconds=args.bake_seconds, check_interval=args.check_interval,
                        ready_timeout=args.ready_timeout, route_timeout=args.route_timeout)
    cluster = _cluster(args)
    token = os.environ.get("PROMOTE_SMOKE_WRITE_TOKEN") or None
    read_token = os.environ.get("PROMOTE_SMOKE_READ_TOKEN") or None
    seed = f"{args.function}-{args.suffix}"
    stable = _stable_urls(cluster, args.function) if not (args.no_smoke and args.no_synthetic_load) else {}
    smoke = None
    if not args.no_smoke:
        smoke = make_smoke_test(args.function, seed, stable, SmokeConfig(exam_year=args.smoke_exam_year,
                                                                          write_token=token, read_token=read_token))
    load = None
    if not args.no_synthetic_load:
        load = HttpLoad(manifest.function(args.function), stable,
                        LoadConfig(exam_year=args.smoke_exam_year, token=token, read_token=read_token,
                                   max_rate=args.synthetic_max_rate),
                        seed=seed)
    report = Rollout(cfg, cluster, _prometheus(args), RealClock(), smoke, load).run()
    gates = (f"error ratio ≤ {args.max_error_ratio:g}, p99 ≤ {args.max_p99_seconds:g}s over {args.window}, "
             f"≥ {args.min_requests:g} requests; steps {','.join(map(str, args.steps))}%, "
             f"bake {args.bake_seconds:g}s, check every {args.check_interval:g}s")
    md = markdown(report, args.environment, gates)
    print(md)
    _step_summary(md)
    if args.report_json:
        with open(args.report_json, "w", encoding="utf-8") as fh:
            fh.write(as_json(report, args.environment))
    _github_output(decision=report.decision.value)
    return EXIT[report.decision]


def cmd_deploy_candidates(args: argparse.Namespace) -> int:
    """Deploy several candidates at 0 % in one Helm upgrade (needed when the
    chart changed: every function's template changes at once). Each
    candidate tag follows its Service's latest revision; the per-function
    rollouts that follow read the revisions' names from the Services."""
    from .cluster import override_values
    from .rollout import PREVIOUS_TAG
    from .knative import TrafficTarget

    digests: dict[str, str] = json.loads(args.digests)
    cluster = _cluster(args)
    merged: dict = {"functions": {}}
    for fn in args.functions.split(","):
        if fn not in FUNCTIONS:
            print(f"unknown function {fn!r}", file=sys.stderr)
            return 64
        state = cluster.get(fn)
        stable = state.stable_revision()
        if commit_of(fn, stable) == args.suffix and state.percent_of(stable or "") == 100:
            print(f"{fn}: {stable} already serves 100%, left as is")
            continue
        traffic = [TrafficTarget(None, 0 if stable else 100, CANDIDATE_TAG)]
        if stable:
            traffic.insert(0, TrafficTarget(stable, 100))
            prev = state.tagged(PREVIOUS_TAG)
            if prev and prev.revision not in (stable, None):
                traffic.append(TrafficTarget(prev.revision, 0, PREVIOUS_TAG))
        merged["functions"].update(override_values(fn, args.suffix, digests[fn], traffic)["functions"])
        print(f"{fn}: candidate of {args.suffix} at 0% beside {stable or '(first deploy: 100%)'}")
    if merged["functions"]:
        cluster.apply_values(merged)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    try:
        frm, to = manual_rollback(_cluster(args), RealClock(), args.function)
    except RolloutFailed as exc:
        print(str(exc), file=sys.stderr)
        return 2
    msg = f"{args.function}: 100% back on {to}; {frm} kept at 0% under tag {CANDIDATE_TAG}"
    print(msg)
    _step_summary(f"↩️ {msg}")
    return 0


def cmd_abort(args: argparse.Namespace) -> int:
    try:
        stable = abort_candidate(_cluster(args), RealClock(), args.function, args.suffix)
    except RolloutFailed as exc:
        print(str(exc), file=sys.stderr)
        return 2
    msg = (f"{args.function}: the candidate of {args.suffix} aborted, 100% on {stable}" if stable
           else f"{args.function}: the candidate of {args.suffix} had no traffic to take back")
    print(msg)
    _step_summary(f"⏹️ {msg}")
    return 0


def cmd_access(args: argparse.Namespace) -> int:
    """READ or WRITE: which set of rollout settings a function uses."""
    print(manifest.function(args.function).access.upper())
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    import time

    result = evaluate(_prometheus(args), args.function, args.revision, _gate(args), args.at or time.time())
    print(json.dumps({"passed": result.passed, "error_ratio": result.error_ratio, "p99_seconds": result.p99_seconds,
                      "requests": result.requests, "reasons": result.reasons}, indent=2))
    return 0 if result.passed else 1


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="promote", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("changed-functions", help="JSON list of the functions a commit range touches")
    p.add_argument("--base", help="base commit (empty or all zeros: all functions)")
    p.add_argument("--head", default="HEAD")
    p.add_argument("--files", help="read changed paths from this file instead of git")
    p.add_argument("--all", action="store_true", help="select every function")
    p.add_argument("--only", help="select these functions (comma-separated; names are checked)")
    p.set_defaults(func=cmd_changed)

    p = sub.add_parser("plan", help="JSON list of the functions whose serving revision differs from --head")
    _add_cluster_args(p)
    p.add_argument("--head", default="HEAD")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("deploy-candidates", help="deploy candidates of several functions at 0%% in one upgrade")
    _add_cluster_args(p)
    p.add_argument("--functions", required=True, help="comma-separated function names")
    p.add_argument("--suffix", required=True, help="the commit being deployed (short SHA)")
    p.add_argument("--digests", required=True, help='JSON object {"<function>": "sha256:..."}')
    p.set_defaults(func=cmd_deploy_candidates)

    p = sub.add_parser("rollout", help="progressive rollout of one function's candidate")
    _add_cluster_args(p)
    _add_gate_args(p)
    p.add_argument("--function", required=True, choices=FUNCTIONS)
    p.add_argument("--suffix", required=True,
                   help="the commit being deployed (short SHA); the chart puts it in the revision name, whose "
                        "rest follows the rendered template: the name is read from the Service's status")
    p.add_argument("--digest", help="image digest sha256:...; omitted: keep the current image")
    p.add_argument("--steps", type=_steps, default=(10, 50, 100), help="traffic percentages, ending at 100")
    p.add_argument("--bake-seconds", type=float, default=300)
    p.add_argument("--check-interval", type=float, default=30)
    p.add_argument("--ready-timeout", type=float, default=300)
    p.add_argument("--route-timeout", type=float, default=120)
    p.add_argument("--environment", default="staging", help="only used in the summary")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke test (not recommended)")
    p.add_argument("--smoke-exam-year", type=int, default=SMOKE_EXAM_YEAR,
                   help="exam year of smoke tests and synthetic load (its partition comes from a migration)")
    p.add_argument("--no-synthetic-load", action="store_true",
                   help="never drive synthetic load at a candidate whose real traffic is too thin for the gates")
    p.add_argument("--synthetic-max-rate", type=float, default=2.0,
                   help="requests per second at most of the synthetic load")
    p.add_argument("--report-json", help="also write the report as JSON here")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("rollback", help="100%% back to the revision tagged 'previous'")
    _add_cluster_args(p)
    p.add_argument("--function", required=True, choices=FUNCTIONS)
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("abort", help="take all traffic off an interrupted candidate (cancelled run)")
    _add_cluster_args(p)
    p.add_argument("--function", required=True, choices=FUNCTIONS)
    p.add_argument("--suffix", required=True)
    p.set_defaults(func=cmd_abort)

    p = sub.add_parser("access", help="READ or WRITE: the function's access in functions.yaml")
    p.add_argument("--function", required=True, choices=FUNCTIONS)
    p.set_defaults(func=cmd_access)

    p = sub.add_parser("gate", help="evaluate the gates once and print the result")
    _add_gate_args(p)
    p.add_argument("--function", required=True, choices=FUNCTIONS)
    p.add_argument("--revision", required=True)
    p.add_argument("--at", type=float, help="unix time to evaluate at (default: now)")
    p.set_defaults(func=cmd_gate)
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except ValueError as exc:  # bad input (steps, digest, names)
        print(f"error: {exc}", file=sys.stderr)
        return 64
    except RolloutFailed as exc:  # kubectl/helm failed before anything was changed
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
