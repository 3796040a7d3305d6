"""scikit-learn's estimator checks on the stateless feature transformers."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from devicepool import DFTMagnitude, FilterBank

_SHORT = (
    "sklearn's tabular test data has rows of 1-20 samples; every row is an utterance, "
    "shorter than one 25 ms frame / 0.25 s segment, which is a clear ValueError by design"
)
_FAILS = {
    "check_dict_unchanged": _SHORT,
    "check_dtype_object": _SHORT,
    "check_dont_overwrite_parameters": _SHORT,
    "check_estimators_dtypes": _SHORT,
    "check_estimators_fit_returns_self": _SHORT,
    "check_estimators_nan_inf": _SHORT + " (NaN rows are rejected too, tested in test_audio)",
    "check_estimators_overwrite_params": _SHORT,
    "check_estimators_pickle": _SHORT,
    "check_f_contiguous_array_estimator": _SHORT,
    "check_fit2d_1feature": _SHORT,
    "check_fit2d_1sample": _SHORT,
    "check_fit2d_predict1d": _SHORT,
    "check_fit_check_is_fitted": _SHORT,
    "check_fit_idempotent": _SHORT,
    "check_fit_score_takes_y": _SHORT,
    "check_methods_sample_order_invariance": _SHORT,
    "check_methods_subset_invariance": _SHORT,
    "check_pipeline_consistency": _SHORT,
    "check_positive_only_tag_during_fit": _SHORT,
    "check_readonly_memmap_input": _SHORT,
    "check_transformer_data_not_an_array": _SHORT,
    "check_transformer_general": _SHORT,
    "check_transformers_unfitted_stateless": _SHORT,
    "check_n_features_in": "utterances have any length: there is no fixed n_features_in_",
    "check_n_features_in_after_fitting": "utterances have any length: there is no fixed n_features_in_",
    "check_estimators_empty_data_messages": (
        "the error names the empty utterance ('utterance 0: empty utterance') instead of "
        "sklearn's tabular '0 feature(s)' wording"
    ),
}


def _expected_failed_checks(estimator):
    return _FAILS


@parametrize_with_checks([FilterBank(), DFTMagnitude()], expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_transformer(estimator, check):
    check(estimator)
