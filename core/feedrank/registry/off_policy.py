"""A version's off-policy estimate as it travels in the registry: the learner that
publishes a version writes it into the version's metrics, the deploy service's
counterfactual gate reads it before the version gets any traffic.

The estimate is paired: the candidate and a **reference** version (the stable one that
served the decisions) re-rank the same logged decisions' exploration pools
(``feedrank.learners.evaluation.version_policy``), and ``difference`` is DR(candidate) -
DR(reference) per shown slot, summed decision by decision, with its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

OPE_VALUE = "ope_value"
OPE_STD_ERROR = "ope_std_error"
OPE_REFERENCE_VALUE = "ope_reference_value"
OPE_DIFFERENCE = "ope_difference"
OPE_DIFFERENCE_STD_ERROR = "ope_difference_std_error"
OPE_EFFECTIVE_SAMPLES = "ope_effective_samples"
OPE_DECISIONS = "ope_decisions"
OPE_REFERENCE = "ope_reference"  # the reference version's number: 7.0 for v0007


@dataclass(frozen=True)
class PairedEstimate:
    """A candidate's estimated value next to its reference's, on the same decisions."""

    value: float  # DR(candidate), reward per shown slot
    std_error: float
    reference: str  # the version it is compared with, e.g. "v0007"
    reference_value: float  # DR(reference)
    difference: float  # DR(candidate) - DR(reference), paired
    difference_std_error: float
    effective_samples: float  # the smaller ESS of the two
    decisions: int

    def to_metrics(self) -> dict[str, float]:
        return {
            OPE_VALUE: self.value,
            OPE_STD_ERROR: self.std_error,
            OPE_REFERENCE_VALUE: self.reference_value,
            OPE_DIFFERENCE: self.difference,
            OPE_DIFFERENCE_STD_ERROR: self.difference_std_error,
            OPE_EFFECTIVE_SAMPLES: self.effective_samples,
            OPE_DECISIONS: float(self.decisions),
            OPE_REFERENCE: float(version_number(self.reference)),
        }

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float]) -> PairedEstimate | None:
        """The estimate a version's metrics hold, or None when they hold none (or an
        unusable one: a NaN difference or standard error)."""
        needed = (OPE_DIFFERENCE, OPE_DIFFERENCE_STD_ERROR, OPE_REFERENCE)
        if not all(name in metrics and math.isfinite(metrics[name]) for name in needed):
            return None
        return cls(
            value=metrics.get(OPE_VALUE, math.nan),
            std_error=metrics.get(OPE_STD_ERROR, math.nan),
            reference=version_name(int(metrics[OPE_REFERENCE])),
            reference_value=metrics.get(OPE_REFERENCE_VALUE, math.nan),
            difference=metrics[OPE_DIFFERENCE],
            difference_std_error=metrics[OPE_DIFFERENCE_STD_ERROR],
            effective_samples=metrics.get(OPE_EFFECTIVE_SAMPLES, math.inf),
            decisions=int(metrics.get(OPE_DECISIONS, 0)),
        )


def version_number(version: str) -> int:
    """7 for "v0007"; ValueError for a name not of the registry's form."""
    if len(version) < 2 or version[0] != "v" or not version[1:].isdigit():
        raise ValueError(f"{version!r} is not a registry version name (v0001, v0002, …)")
    return int(version[1:])


def version_name(number: int) -> str:
    """ "v0007" for 7: the registry's own names."""
    return f"v{number:04d}"
