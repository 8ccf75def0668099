import math

import numpy as np
import pytest
from scipy import stats

from inspector.evaluation.conformal import clopper_pearson_upper, conformal_threshold, min_good


@pytest.mark.parametrize("k,n", [(0, 10), (0, 300), (3, 300), (6, 755), (40, 50)])
def test_clopper_pearson_upper_matches_the_beta_quantile(k, n):
    assert clopper_pearson_upper(k, n) == pytest.approx(stats.beta.ppf(0.95, k + 1, n - k), abs=1e-9)


def test_clopper_pearson_upper_of_every_trial_flagged_is_one():
    assert clopper_pearson_upper(5, 5) == 1.0 and clopper_pearson_upper(0, 0) == 1.0


def test_the_threshold_is_the_conformal_order_statistic():
    scores = np.arange(1.0, 201.0)  # 1..200
    point = conformal_threshold(scores, 0.05)
    k = math.ceil(201 * 0.95)  # 191: the 191st smallest is exceeded by a new score with probability <= 5 %
    assert scores[k - 1] < point.threshold < scores[k] and point.flagged == 200 - k
    assert point.enough and point.n_good == 200


def test_new_good_parts_reach_the_threshold_at_most_at_the_target_rate():
    rng = np.random.default_rng(0)
    rate, n, reached = 0.02, 60, []
    for _ in range(2000):  # a fresh calibration set each time: the guarantee is over draws of it
        point = conformal_threshold(rng.gamma(2.0, size=n), rate)
        reached.append(np.mean(rng.gamma(2.0, size=200) >= point.threshold))
    assert np.mean(reached) <= rate + 0.002  # a raw 98th percentile of 60 scores would flag about 3 %


def test_too_few_good_scores_take_the_maximum_and_say_how_many_are_needed():
    point = conformal_threshold(np.array([0.5, 2.0, 1.0]), 0.01)
    assert not point.enough and point.needed == min_good(0.01) == 99
    assert point.threshold > 2.0 and point.flagged == 0


@pytest.mark.parametrize("scores,rate", [([], 0.1), ([1.0, np.nan], 0.1), ([1.0], 0.0), ([1.0], 1.0)])
def test_bad_inputs_are_refused(scores, rate):
    with pytest.raises(ValueError):
        conformal_threshold(np.array(scores), rate)
