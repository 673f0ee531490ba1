"""The chaos run's report: the per-fault table, the totals and the targets."""

from __future__ import annotations

from typing import Any

FAULT_COUNT = 6  # benchmarks.chaos.FAULTS (the full size injects them all)


def print_report(report: dict[str, Any]) -> None:
    faults = report["faults"]
    header = f"{'fault':<40} {'killed':<20} {'recover s':>9} {'calls':>6} {'failed':>6} "
    header += f"{'dec. lost':>9} {'ex. missing':>11} {'ex. dup':>7} {'restarts':>8}"
    print(header)
    for fault in faults:
        print(
            f"{fault['fault']:<40} {fault['component']:<20} {fault['recover_s']:>9.1f} "
            f"{fault['calls']:>6} {fault['failed_calls']:>6} {fault['decisions_lost']:>9} "
            f"{fault['examples_missing']:>11} {fault['examples_duplicated']:>7} "
            f"{fault['restarts']:>8}"
        )
    print(
        f"\nstartup {report['startup_s']:.0f}s; {report['calls']:,} Rank calls, "
        f"{report['calls_failed']} failed; {report['decisions_answered']:,} decisions answered "
        f"before the faults ended, {report['decisions_lost']} lost; examples: "
        f"{report['examples_expected']:,} expected, {report['examples_missing']} missing, "
        f"{report['examples_duplicated']} duplicated, {report['examples_unexpected']} unexpected; "
        f"learner applied {report['learner_examples_applied']:,} of "
        f"{report['learner_examples_expected']:,} examples "
        f"({'exactly once' if report['learner_exactly_once'] else 'NOT exactly once'})"
    )
    for target, met in targets(report).items():
        print(f"  {target}: {'met' if met else 'MISSED'}")


def targets(report: dict[str, Any]) -> dict[str, bool]:
    faults = report["faults"]
    return {
        "every fault recovered": len(faults) == report.get("faults_planned", FAULT_COUNT)
        and all(f["recovered"] for f in faults),
        "0 Rank calls failed": report["calls_failed"] == 0,
        "0 decisions lost": report["decisions_lost"] == 0,
        "0 examples lost or duplicated": report["examples_missing"] == 0
        and report["examples_duplicated"] == 0,
        "learner applied every example exactly once": report["learner_exactly_once"],
    }
