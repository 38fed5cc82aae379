"""``mmrag checks`` and ``mmrag baseline`` (data quality)."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from mmrag_assets.cli._app import command, config_of, emit, json_flag


def reason_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--reason", default="", help="why the baseline is set or rotated (recorded with who and when)"
    )
    json_flag(sp)


@command("checks", "print the latest result of every asset check (contracts, drift, modality gap)", json_flag)
def cmd_checks(args: argparse.Namespace) -> int:
    from mmrag_assets.definitions import build_definitions
    from mmrag_assets.defs.quality.results import latest_check_results
    from mmrag_assets.lib.quality.gates import gate_keys
    from mmrag_assets.lib.store.runtime import Runtime
    from mmrag_assets.orchestration.instance import open_instance

    cfg = config_of(args)
    rt = Runtime(cfg)
    with open_instance(cfg) as instance:
        checks = latest_check_results(instance, build_definitions(cfg.overrides))
    held = [
        {
            "source": r["source"],
            "doc_id": r["doc_id"],
            "check": r["check_name"],
            "detail": r["detail"],
            "run_id": r["run_id"],
        }
        for r in rt.catalog.failing_checks(rt.version_key, gate_keys(cfg.checks.contracts, cfg.model.dim))
    ]
    if args.json:
        emit({"checks": checks, "held_back": held})
    else:
        _print_checks(checks)
        if held:
            print(f"\n{len(held)} document(s) held back from the index by a failed blocking check:")
            for h in held:
                print(f"  {h['source']}: {h['check']}: {(h['detail'] or '').splitlines()[-1].strip()}")
    return 0


@command(
    "baseline", "set or rotate the embedding-drift baselines of the current index on purpose", reason_flag
)
def cmd_baseline(args: argparse.Namespace) -> int:
    from mmrag_assets.errors import MmragError
    from mmrag_assets.lib.quality.baselines import baseline_log
    from mmrag_assets.lib.store.runtime import Runtime
    from mmrag_assets.orchestration.instance import open_instance
    from mmrag_assets.orchestration.launch import launch

    cfg = config_of(args)
    ops = {"drift_baselines": {"config": {"reason": args.reason, "requested_by": getpass.getuser()}}}
    with open_instance(cfg) as instance:  # through Dagster, so the UI shows who set it in the asset's history
        out = launch(cfg, instance, "drift_baseline_job", run_config={"ops": ops}, verbose=args.verbose)
    if not out.success:
        raise MmragError(f"run {out.run_id} failed: {out.error}")
    result_run_id = out.run_id
    rt = Runtime(cfg)
    vk = rt.version_key
    rows = [r for r in baseline_log(rt.catalog, vk) if r["run_id"] == result_run_id]
    out = [_jsonable(r) for r in rows]
    if args.json:
        emit({"version_key": vk, "run_id": result_run_id, "baselines": out})
    else:
        for r in out:
            print(
                f"{r['action']} {r['modality']} baseline of {vk}: {r['n_items']} items "
                f"by {r['user_name']} at {r['logged_at']} UTC ({r['reason']})"
            )
    return 0


def _jsonable(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat(timespec="seconds") if hasattr(v, "isoformat") else v for k, v in r.items()}


def _print_checks(checks: list[dict[str, Any]]) -> None:
    if not checks:
        print("no asset checks defined")
        return
    w_asset = max(len(c["asset"]) for c in checks)
    w_check = max(len(c["check"]) for c in checks)
    print(
        f"{'asset':<{w_asset}}  {'check':<{w_check}}  {'result':<7}  {'severity':<8}  when                 detail"
    )
    for c in checks:
        result = "-" if c["passed"] is None else "pass" if c["passed"] else "FAIL"
        when = (c.get("evaluated_at") or "never run")[:19]
        detail = ""
        if c.get("failing_partitions"):
            detail = f"{len(c['failing_partitions'])} failing partition(s): {', '.join(c['failing_partitions'][:3])}"
        elif c["passed"] is False:
            m = c["metadata"]
            detail = str(c.get("description") or m.get("failed_checks") or m.get("notes") or "")[:100]
        print(
            f"{c['asset']:<{w_asset}}  {c['check']:<{w_check}}  {result:<7}  {c['severity'] or '-'!s:<8}  {when:<19}  {detail}"
        )
