"""What the verdicts at a bundle's thresholds cost on the line: parts shipped defective, good parts scrapped, parts
a person must look at.

An operator acts on three figures, counted on the verdicts the service gives (the serving predictor under the
bundle's thresholds: per-class reject thresholds, review band and anomaly head included), not on a threshold of the
defect score: ``escape_rate`` (parts whose truth is a defect class that got ACCEPT, over those parts),
``false_reject_rate`` (good parts that got REJECT, over good parts) and ``review_rate`` (parts that got REVIEW, over
all parts). A REVIEW is neither an escape nor a false reject: a person decides it. Each rate comes with the counts it
is made of and is None where its denominator is zero. The escape and false-reject rates carry a one-sided
Clopper-Pearson 95 % upper bound: no escape among 24 defective parts is a rate of 0 that could be 12 % on the next
parts, and a percentile bootstrap of it would say [0, 0].
"""

from __future__ import annotations

from typing import Any, Sequence

from inspector.config import GOOD_CLASS
from inspector.evaluation.conformal import clopper_pearson_upper
from inspector.inference.postprocess import ACCEPT, REJECT, REVIEW

VERDICTS = (ACCEPT, REVIEW, REJECT)


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def _upper(k: int, n: int) -> float | None:
    return clopper_pearson_upper(k, n) if n else None


def _good_figures(verdicts: list[str]) -> dict[str, Any]:
    n, rejected, reviewed = len(verdicts), verdicts.count(REJECT), verdicts.count(REVIEW)
    return {"parts": n, "falsely_rejected": rejected, "false_reject_rate": _rate(rejected, n),
            "false_reject_rate_upper": _upper(rejected, n), "reviewed": reviewed, "review_rate": _rate(reviewed, n)}


def _defect_figures(verdicts: list[str]) -> dict[str, Any]:
    n, escaped, reviewed = len(verdicts), verdicts.count(ACCEPT), verdicts.count(REVIEW)
    return {"parts": n, "escaped": escaped, "escape_rate": _rate(escaped, n), "escape_rate_upper": _upper(escaped, n),
            "reviewed": reviewed, "review_rate": _rate(reviewed, n)}


def operating_point(truth: Sequence[str], verdicts: Sequence[str], classes: Sequence[str] = (),
                    good_class: str = GOOD_CLASS) -> dict[str, Any]:
    """The operating figures of a set of parts.

    Args:
        truth: ``(n,)`` true class name of each part.
        verdicts: ``(n,)`` verdict of each part (ACCEPT, REVIEW or REJECT).
        classes: Classes to report in ``per_class`` even without parts (their figures then None), in this order;
            classes of ``truth`` not among them follow, sorted.
        good_class: Name of the defect-free class; every other true class is a defect.

    Returns:
        ``parts``, ``defective``, ``escaped``, ``escape_rate``, ``escape_rate_upper``, ``good``,
        ``falsely_rejected``, ``false_reject_rate``, ``false_reject_rate_upper``, ``reviewed``, ``review_rate`` and
        ``per_class[name]``: for the good class ``parts``, ``falsely_rejected``, ``false_reject_rate``,
        ``false_reject_rate_upper``, ``reviewed``, ``review_rate``; for a defect class ``parts``, ``escaped``,
        ``escape_rate``, ``escape_rate_upper``, ``reviewed``, ``review_rate``. Rates are None without parts to
        divide by.

    Raises:
        ValueError: On a size mismatch or a verdict that is none of the three.
    """
    truth, verdicts = [str(t) for t in truth], [str(v) for v in verdicts]
    if len(truth) != len(verdicts):
        raise ValueError(f"truth and verdicts differ in size: {len(truth)} vs {len(verdicts)}")
    unknown = sorted(set(verdicts) - set(VERDICTS))
    if unknown:
        raise ValueError(f"unknown verdicts {unknown}; expected {list(VERDICTS)}")
    good = [v for t, v in zip(truth, verdicts) if t == good_class]
    defect = [v for t, v in zip(truth, verdicts) if t != good_class]
    g, d = _good_figures(good), _defect_figures(defect)
    names = list(dict.fromkeys(classes)) + sorted(set(truth) - set(classes))
    per_class = {name: (_good_figures if name == good_class else _defect_figures)(
        [v for t, v in zip(truth, verdicts) if t == name]) for name in names}
    reviewed = verdicts.count(REVIEW)
    return {"parts": len(truth), "defective": d["parts"], "escaped": d["escaped"], "escape_rate": d["escape_rate"],
            "escape_rate_upper": d["escape_rate_upper"], "good": g["parts"], "falsely_rejected": g["falsely_rejected"],
            "false_reject_rate": g["false_reject_rate"], "false_reject_rate_upper": g["false_reject_rate_upper"],
            "reviewed": reviewed, "review_rate": _rate(reviewed, len(truth)), "per_class": per_class}
