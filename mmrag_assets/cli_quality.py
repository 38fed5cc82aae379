"""``mmrag checks`` and ``mmrag baseline`` (data quality)."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from mmrag_assets.cli import _cfg, _emit, command, json_flag


def reason_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--reason", default="", help="why the baseline is set or rotated (recorded with who and when)"
    )
    json_flag(sp)


@command("checks", "print the latest result of every asset check (contracts, drift, modality gap)", json_flag)
def cmd_checks(args: argparse.Namespace) -> int:
    from mmrag_assets.defs.quality.results import latest_check_results
    from mmrag_assets.runner import open_instance

    cfg = _cfg(args)
    with open_instance(cfg) as instance:
        checks = latest_check_results(instance, cfg.overrides)
    if args.json:
        _emit({"checks": checks})
    else:
        _print_checks(checks)
    return 0


@command(
    "baseline", "set or rotate the embedding-drift baselines of the current index on purpose", reason_flag
)
def cmd_baseline(args: argparse.Namespace) -> int:
    import dagster as dg

    from mmrag_assets.definitions import ASSET_CHECKS, ASSETS
    from mmrag_assets.errors import MmragError
    from mmrag_assets.lib.catalog import Catalog
    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.lib.quality.baselines import baseline_log
    from mmrag_assets.resources.mmrag import MmragResource
    from mmrag_assets.runner import _quiet_run_config, open_instance

    cfg = _cfg(args)
    run_config = {
        **_quiet_run_config(),
        "ops": {"drift_baselines": {"config": {"reason": args.reason, "requested_by": getpass.getuser()}}},
    }
    with open_instance(cfg) as instance:  # through Dagster, so the UI shows who set it in the asset's history
        result = dg.materialize(
            [*ASSETS, *ASSET_CHECKS],
            selection=["drift_baselines"],
            instance=instance,
            resources={"mmrag": MmragResource(overrides=list(cfg.overrides))},
            run_config=run_config,
            raise_on_error=False,
        )
    if not result.success:
        raise MmragError(_failure_message(result))
    vk = version_key_for(cfg.model)
    rows = [r for r in baseline_log(Catalog(cfg.catalog_path), vk) if r["run_id"] == result.run_id]
    out = [_jsonable(r) for r in rows]
    if args.json:
        _emit({"version_key": vk, "run_id": result.run_id, "baselines": out})
    else:
        for r in out:
            print(
                f"{r['action']} {r['modality']} baseline of {vk}: {r['n_items']} items "
                f"by {r['user_name']} at {r['logged_at']} UTC ({r['reason']})"
            )
    return 0


def _failure_message(result) -> str:
    """The innermost cause of the first failed step: mmrag's own message, not Dagster's wrapper."""
    for e in result.all_events:
        if e.is_step_failure and e.event_specific_data and e.event_specific_data.error:
            err = e.event_specific_data.error
            while err.cause is not None:
                err = err.cause
            head, _, rest = err.message.strip().partition(": ")
            return rest if rest and head.endswith(err.cls_name or "\0") else err.message.strip()
    return f"Dagster run {result.run_id} failed: see the run log"


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
            detail = str(m.get("failed_checks") or m.get("severity") or m.get("notes") or "")[:80]
        print(
            f"{c['asset']:<{w_asset}}  {c['check']:<{w_check}}  {result:<7}  {c['severity'] or '-'!s:<8}  {when:<19}  {detail}"
        )
