"""``mmrag eval``: retrieval evaluation, config-swap experiments and threshold calibration.

    mmrag eval [queries=PATH] [overrides]                  one run: one JSON object on stdout
    mmrag eval -m model=lite,tiny search.first_stage=plaid,binary [overrides]
                                                           a Hydra grid: comparison table, plot, report
    mmrag eval --by channel --by kind [overrides]          metrics broken down by query tags
    mmrag eval --calibrate NAME [--only thresholds|fusion] [--keep 0.95] [queries=PATH] [overrides]
                                                           train the learned fusion -> conf/fusion/NAME.json and
                                                           propose thresholds -> conf/search/NAME.yaml (use: search=NAME)

A config whose index (or first-stage structure) is missing is indexed first, through the same
Dagster assets as ``mmrag index`` (``eval.index_missing=false`` fails instead). An index that
exists is used as it is: run ``mmrag index`` after the corpus changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmrag_assets.cli._app import command, emit, json_flag, say
from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.errors import ConfigError


def eval_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="Hydra multirun: expand sweeps (a=x,y  choice()  range()  glob()) and compare every config",
    )
    sp.add_argument("--name", default=None, help="multirun report name (default: sweep-<sweep id>)")
    sp.add_argument(
        "--calibrate",
        metavar="NAME",
        default=None,
        help="instead of scoring: train the learned fusion on the labelled queries (conf/fusion/NAME.json) and propose "
        "per-modality-pair thresholds (conf/search/NAME.yaml; use: search=NAME)",
    )
    sp.add_argument(
        "--only",
        choices=("thresholds", "fusion"),
        default=None,
        help="--calibrate: only the thresholds, or only the fusion model (use: search.fusion=learned search.fusion_model=NAME)",
    )
    sp.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="TAG",
        help="break the metrics down by the values of a query tag (repeatable): mixed ranking and restricted view",
    )
    sp.add_argument(
        "--keep",
        type=float,
        default=None,
        help="--calibrate: share of relevant hits to keep (default: eval.calibration_keep)",
    )
    json_flag(sp)


def _index(cfg: MmragConfig) -> Any:
    from mmrag_assets.orchestration.launch import index

    return index(cfg, say)


@command(
    "eval",
    "evaluate retrieval on a labelled query set; -m compares a Hydra sweep of configs; --calibrate NAME proposes thresholds",
    eval_flags,
)
def cmd_eval(args: argparse.Namespace) -> int:
    from mmrag_assets.lib.evaluation.sweep import is_sweep

    if args.calibrate and args.multirun:
        raise ConfigError("--calibrate proposes thresholds for one config: drop -m")
    if args.calibrate:
        return _calibrate(args)
    if args.multirun:
        return _multirun(args)
    if is_sweep(args.overrides):
        raise ConfigError(f"{' '.join(args.overrides)} sweeps over several values: add -m to run the grid")
    from mmrag_assets.lib.evaluation.evaluate import summary
    from mmrag_assets.lib.evaluation.experiments import run_experiment

    cfg = load_config(args.overrides)
    record = run_experiment(cfg, ensure_index=_index, progress=say, by=args.by)
    out = summary(record)
    if args.json:
        emit(out)
    else:
        from mmrag_assets.lib.evaluation import report

        print(report.text_table([record]))
        print(report.channel_table([record]).replace("|:--|", "|---|"))
        for line in report.summary_lines([record]):
            print(line)
        print(f"run {record['run_id']} (DuckDB table experiments; the whole record: --json)")
    return 0


def _multirun(args: argparse.Namespace) -> int:
    from mmrag_assets.lib.evaluation import report
    from mmrag_assets.lib.evaluation.evaluate import summary
    from mmrag_assets.lib.evaluation.experiments import run_grid

    out = run_grid(args.overrides, ensure_index=_index, name=args.name, progress=say, by=args.by)
    runs, failed = out.pop("runs"), out["failed"]
    if args.json:
        emit({**out, "runs": [summary(r) for r in runs]})
    else:
        if runs:
            print(report.text_table(runs))
            for line in report.summary_lines(runs):
                print(line)
            print(f"report: {out['report']}\nplot: {out['plot']}")
            print(
                f"runs: {', '.join(r['run_id'] for r in runs)} (DuckDB table experiments, sweep_id {out['sweep_id']})"
            )
        for f in failed:
            print(f"failed: {f['label']}: {f['error']}")
    return 1 if failed else 0


def _calibrate(args: argparse.Namespace) -> int:
    from mmrag_assets.lib.evaluation import calibrate as ct
    from mmrag_assets.lib.evaluation.experiments import open_searcher
    from mmrag_assets.lib.evaluation.query_set import load_query_set
    from mmrag_assets.lib.store.runtime import Runtime

    cfg = load_config(args.overrides)
    keep = cfg.eval.calibration_keep if args.keep is None else args.keep
    if not 0 < keep <= 1:
        raise ConfigError(f"--keep={keep} must be within (0, 1]")
    if cfg.search.reranker != "maxsim":
        raise ConfigError(
            "thresholds and the learned fusion read calibrated MaxSim scores: calibrate with search.reranker=maxsim"
        )
    do_fusion, do_thresholds = args.only in (None, "fusion"), args.only in (None, "thresholds")
    if do_thresholds:
        ct.check_name(args.calibrate, _conf_dir())
    query_set = load_query_set(cfg.eval.queries)
    provenance = (
        f"From {query_set.path.name} (sha256 {query_set.sha256}, {len(query_set)} queries), model={cfg.model.name} "
        f"arch={cfg.model.arch}, first_stage={cfg.search.first_stage}, overrides: {' '.join(cfg.overrides) or '(none)'}"
    )
    out: dict[str, Any] = {"name": args.calibrate, "queries": str(query_set.path)}
    if do_fusion:
        out["fusion"] = _train_fusion(args, cfg, query_set)
    if do_thresholds:
        searcher = open_searcher(Runtime(cfg), _index, say)
        scores = ct.collect_scores(cfg.search, searcher, query_set, progress=say)
        proposal = ct.propose(scores, keep, cfg.search.thresholds)
        path = ct.write_threshold_option(
            cfg,
            args.calibrate,
            proposal,
            keep=keep,
            provenance=provenance,
            fusion_model=args.calibrate if do_fusion else None,
        )
        out |= {
            "path": str(path), "use": f"search={args.calibrate}", "keep": keep,
            "thresholds": {pair: p["threshold"] for pair, p in proposal.items()}, "pairs": proposal,
        }  # fmt: skip
    if args.json:
        emit(out)
        return 0
    if do_fusion:
        f = out["fusion"]
        print(
            f"fusion model {f['path']}: {f['n_queries']} queries, {f['positives']} relevant of {f['n_rows']} candidates; "
            f"held-out (grouped {f['folds']}-fold) hit@10 / MRR@10 {f['cv_hit@10']:.2f} / {f['cv_mrr@10']:.2f} against "
            f"{f['baseline_hit@10']:.2f} / {f['baseline_mrr@10']:.2f} with search.fusion={f['baseline']}"
        )
    if do_thresholds:
        for pair, p in out["pairs"].items():
            what = (
                f"keeps {p['kept_relevant']:.0%} of {p['relevant_hits']} relevant hits, drops {p['dropped_other'] or 0:.0%} of {p['other_hits']} others"
                if p["relevant_hits"]
                else p["source"]
            )
            print(f"{pair:<13} {p['threshold']:>8.3f}  ({what})")
        print(f'wrote {out["path"]}\nuse it: mmrag search "..." search={args.calibrate}')
    else:
        print(f'use it: mmrag search "..." search.fusion=learned search.fusion_model={args.calibrate}')
    return 0


def _train_fusion(args: argparse.Namespace, cfg: MmragConfig, query_set: Any) -> dict[str, Any]:
    """Train the learned fusion on ``query_set`` and write conf/fusion/NAME.json."""
    import shlex

    from mmrag_assets.lib.evaluation import fusion_train as ft
    from mmrag_assets.lib.evaluation.experiments import open_searcher
    from mmrag_assets.lib.search.learned import check_writable, model_path
    from mmrag_assets.lib.store.runtime import Runtime

    path = check_writable(model_path(args.calibrate, _conf_dir()))
    # the evidence does not depend on the fusion; the fusion that ranks while collecting is the
    # baseline the report compares with: the configured one, or score fusion when that is learned
    ccfg = load_config([*args.overrides, "search.fusion=score"]) if cfg.search.fusion == "learned" else cfg
    searcher = open_searcher(Runtime(ccfg), _index, say)
    say(f"training the learned fusion on {query_set.path.name} ({len(query_set)} queries)")
    # the model file is shared (conf/ is committed): no path of this machine goes into it
    command = "mmrag eval --calibrate " + shlex.join(
        [args.calibrate, *(["--only", args.only] if args.only else []), *map(_short, args.overrides)]
    )
    tier = {"arch": cfg.model.arch, "model": cfg.model.name, "dim": cfg.model.dim}
    model, report, ds = ft.train(
        searcher, query_set, name=args.calibrate, tier=tier, command=command, progress=say
    )
    model.save(path)
    best = report["cv"][str(report["C"])]
    return {
        "path": str(path), "n_queries": ds.n_queries, "n_rows": len(ds.y), "positives": int(ds.y.sum()), "C": report["C"],
        "folds": min(ft.FOLDS, ds.n_queries), "cv_hit@10": best["hit@10"], "cv_mrr@10": best["mrr@10"],
        "baseline": report["baseline"], "baseline_hit@10": report["cv_baseline"]["hit@10"],
        "baseline_mrr@10": report["cv_baseline"]["mrr@10"],
    }  # fmt: skip


def _short(override: str) -> str:
    """``key=/an/absolute/path/to/x`` -> ``key=.../to/x`` (what the path was, not where)."""
    key, eq, value = override.partition("=")
    p = Path(value)
    return (
        f"{key}{eq}.../{'/'.join(p.parts[-2:])}" if eq and p.is_absolute() and len(p.parts) > 3 else override
    )


def _conf_dir():
    from mmrag_assets import config

    return config.conf_dir()
