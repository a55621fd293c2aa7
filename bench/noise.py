"""Whether one side's timings beat another's by more than run-to-run noise: two verdicts, pure stdlib.

Both compare repeated samples of one metric where lower is better (a wall time, an overhead) and answer
"ahead", "behind" or "within noise" for `ours` against `peer`:

- `strict`: the difference of the medians must exceed the larger of the two spreads (max - min). Simple and
  conservative; its bar rises with the number of repetitions (more samples, wider min-max).
- `bootstrap`: a 95 % percentile-bootstrap confidence interval of the ratio of medians (ours / peer), each side
  resampled with replacement; "ahead" when the whole interval is below 1, "behind" when above. Seeded, so the
  same samples always give the same interval. With 5-7 samples a side it is an approximation (percentile
  intervals of a median run narrow for small samples): a reading aid, not a proof.

Either verdict is "too few samples" when a side has fewer than `MIN_SAMPLES`.
"""

import random
import statistics
from dataclasses import dataclass

AHEAD, BEHIND, WITHIN, FEW = "ahead", "behind", "within noise", "too few samples"
MIN_SAMPLES = 3
"""Below this many samples a side, neither rule says anything (one sample has no spread to clear)."""
RESAMPLES = 5_000
SEED = 12


@dataclass(frozen=True)
class Strict:
    """The strict rule's reading of ours against a peer."""

    difference: float
    """The peer's median minus ours: positive when ours is lower (better)."""
    spread: float
    """The larger of the two min-max spreads: the bar the difference must clear."""
    verdict: str


@dataclass(frozen=True)
class Bootstrap:
    """The bootstrap's reading of ours against a peer."""

    ratio: float
    """Ours / peer, the ratio of the medians of the samples themselves."""
    low: float
    """2.5th percentile of the resampled ratios."""
    high: float
    """97.5th percentile of the resampled ratios."""
    verdict: str


def strict(ours: list[float], peer: list[float]) -> Strict:
    """Ahead or behind only when the difference of the medians exceeds the larger min-max spread."""
    difference = statistics.median(peer) - statistics.median(ours)
    spread = max(max(ours) - min(ours), max(peer) - min(peer))
    if min(len(ours), len(peer)) < MIN_SAMPLES:
        return Strict(difference, spread, FEW)
    if abs(difference) <= spread:
        return Strict(difference, spread, WITHIN)
    return Strict(difference, spread, AHEAD if difference > 0 else BEHIND)


def bootstrap(
    ours: list[float], peer: list[float], *, resamples: int = RESAMPLES, seed: int = SEED
) -> Bootstrap:
    """The 95 % bootstrap interval of median(ours) / median(peer) and its verdict.

    The peer's samples must all be positive (a ratio to a median at or below zero means nothing); ours may be
    anything. A fresh `random.Random(seed)` per call: the interval depends on the two samples only.
    """
    if not ours or not peer:
        raise ValueError("bootstrap: both sides need at least one sample")
    if min(peer) <= 0:
        raise ValueError(f"bootstrap: the peer's samples must be positive to take a ratio (got {min(peer)})")
    rng = random.Random(seed)
    ratios = [
        statistics.median(rng.choices(ours, k=len(ours))) / statistics.median(rng.choices(peer, k=len(peer)))
        for _ in range(resamples)
    ]
    # cut points every 2.5 %: the first and the last bound the middle 95 %
    cuts = statistics.quantiles(ratios, n=40, method="inclusive")
    low, high = cuts[0], cuts[-1]
    verdict = AHEAD if high < 1 else BEHIND if low > 1 else WITHIN
    if min(len(ours), len(peer)) < MIN_SAMPLES:
        verdict = FEW
    return Bootstrap(statistics.median(ours) / statistics.median(peer), low, high, verdict)
