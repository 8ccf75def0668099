"""A threshold on good parts' scores that holds on good parts not yet seen: the conformal order statistic, and a
Clopper-Pearson bound on the share of good parts it flags.

With ``n`` good scores exchangeable with the next good part's, the ``k``-th smallest, ``k = ceil((n + 1)(1 - rate))``,
is exceeded by the next good part with probability at most ``rate`` (split conformal prediction). A raw percentile of
a few dozen scores has no such guarantee: the 99th percentile of 56 scores is their maximum, and the next part beats
it about once in 57.

The same bound says how many parts a rate target needs at all (:func:`min_parts`, :func:`target_shortfall`): with
no event among ``n`` parts the 95 % upper bound on the rate is ``1 - 0.05 ** (1 / n)``, about ``3 / n`` (the rule of
three), so a target of 1 % needs about 300 parts, and 24 parts measure nothing finer than 1/24 = 4 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # of the reported upper bound on the flag rate


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on good scores and what it promises."""

    threshold: float  # a score at or above it is flagged
    target_rate: float  # the share of good parts it may flag (the conformal guarantee, in expectation)
    n_good: int  # good scores it was placed on
    flagged: int  # of those, how many reach it
    rate_upper: float  # Clopper-Pearson upper bound (at CONFIDENCE) on the flag rate of good parts at the threshold
    enough: bool  # n_good reaches min_good(target_rate): the guarantee holds; otherwise the threshold is the maximum
    needed: int  # good images the target needs (min_good)

    def shortfall(self) -> str | None:
        """What to tell the operator when the good images are too few for the target; None when they suffice."""
        if self.enough:
            return None
        return (f"only {self.n_good} good images for an anomaly review rate of {100 * self.target_rate:.2f} %: the "
                f"target needs at least {self.needed}; the operating point is the highest good score, and more good "
                "parts may go to review than the target (add good images, or raise --anomaly-review-rate)")


def min_good(rate: float) -> int:
    """Fewest good scores for which the conformal threshold at ``rate`` is one of them (``(n + 1) rate >= 1``)."""
    return max(1, math.ceil(1.0 / rate - 1.0 - 1e-9))


def min_parts(rate: float, confidence: float = CONFIDENCE) -> int:
    """Fewest parts among which none with the event bounds its rate at ``rate`` or below (the Clopper-Pearson upper
    bound of 0 events, ``1 - (1 - confidence) ** (1 / n)``; at 95 % about ``3 / rate``, the rule of three).

    Raises:
        ValueError: ``rate`` outside (0, 1].
    """
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    if rate == 1.0:
        return 1
    return max(1, math.ceil(math.log(1.0 - confidence) / math.log1p(-rate) - 1e-9))


def target_shortfall(n: int, rate: float, parts: str, figure: str, option: str) -> str | None:
    """What to tell the operator when ``n`` parts are too few to show a rate as small as ``rate``; None when they
    suffice (:func:`min_parts`). ``parts`` names them ("defect images"), ``figure`` the rate ("escape rate"),
    ``option`` the flag that sets it."""
    needed = None if rate <= 0.0 else min_parts(rate)
    if n <= 0 or (needed is not None and n >= needed):
        return None
    need = f"no number of {parts} can show it" if needed is None else f"the target needs at least {needed} {parts}"
    return (f"only {n} {parts} for a target {figure} of {100 * rate:.2f} %: one in {n} is already {100 / n:.2f} %, "
            f"and none among {n} still allows up to {100 * clopper_pearson_upper(0, n):.1f} % "
            f"({100 * CONFIDENCE:.0f} % upper bound, about 3/{n}); {need} (add {parts}, or raise {option})")


def clopper_pearson_upper(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound on a binomial rate from ``k`` events in ``n`` trials (exact, by bisection)."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    alpha = 1.0 - confidence

    def cdf(p: float) -> float:  # P(X <= k) for X ~ Binomial(n, p)
        logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
                + (n - i) * math.log1p(-p) for i in range(k + 1)]
        top = max(logs)
        return math.exp(top) * sum(math.exp(v - top) for v in logs)

    lo, hi = 0.0, 1.0
    for _ in range(60):  # cdf falls with p: the bound is where it crosses alpha
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(max(mid, 1e-300)) > alpha else (lo, mid)
    return hi


def conformal_threshold(good_scores: np.ndarray, rate: float) -> OperatingPoint:
    """The threshold that flags at most ``rate`` of good parts to come, from the scores of ``good_scores``.

    Raises:
        ValueError: No scores, a non-finite score, or a rate outside (0, 1).
    """
    scores = np.sort(np.asarray(good_scores, np.float64).ravel())
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    if scores.size == 0 or not np.isfinite(scores).all():
        raise ValueError("need at least one finite good score")
    n = scores.size
    k = math.ceil((n + 1) * (1.0 - rate) - 1e-9)  # 1-based rank
    enough = k <= n
    threshold = float(np.nextafter(scores[min(k, n) - 1], np.inf))  # flagged: strictly above the k-th score
    flagged = int(np.sum(scores >= threshold))
    return OperatingPoint(threshold, rate, n, flagged, clopper_pearson_upper(flagged, n), enough, min_good(rate))
