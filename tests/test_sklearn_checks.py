"""scikit-learn's estimator checks that apply to an image estimator.

``check_estimator`` feeds tabular ``X``; with ``two_d_array=False`` it has nothing to run
for an image estimator. The API checks that do apply run here; the ones that fail because
of skorch's design (or feed tabular data) are listed with the reason, as strict xfails.
"""

import warnings

import pytest
from sklearn.utils import estimator_checks as ec

from skunet import UNetSegmenter

APPLICABLE = [
    "check_get_params_invariance",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
]

EXPECTED_FAILURES = {
    "check_no_attributes_set_in_init": "skorch's NeuralNet sets history_, initialized_ and "
    "virtual_params_ in __init__ and stores **kwargs such as module__depth as attributes",
    "check_set_params": "the check sets random floats on every parameter; skorch then "
    "initialises callbacks with them",
    "check_positive_only_tag_during_fit": "the check fits tabular X (n_samples, n_features), "
    "which an image estimator rejects",
}


@pytest.mark.parametrize("check", APPLICABLE)
def test_applicable_checks(check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(ec, check)("UNetSegmenter", UNetSegmenter(module__depth=2))


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=r))
        for c, r in EXPECTED_FAILURES.items()
    ],
)
def test_expected_failures(check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(ec, check)("UNetSegmenter", UNetSegmenter(module__depth=2))


def test_check_estimator_has_nothing_to_run_on_images():
    with pytest.warns(UserWarning, match="Can't test estimator"):
        ec.check_estimator(UNetSegmenter(), on_fail=None)
