"""Speakers (``groups``) to an estimator's ``fit``, through pipelines."""

from __future__ import annotations

import inspect

__all__ = ["fit_with_groups", "groups_fit_params"]


def groups_fit_params(est, groups):
    """Keyword arguments that hand ``groups`` to whatever in ``est`` takes them.

    ``{"groups": groups}`` when ``est.fit`` has a ``groups`` parameter (the networks'
    speaker-disjoint validation, the GMM-UBM's calibration folds, the fusion's inner
    split) or, with scikit-learn's metadata routing on, when something in ``est`` requests
    them (our estimators that take ``groups`` request them by default); with routing off,
    ``{"<last step>__groups": groups}`` for a :class:`~sklearn.pipeline.Pipeline` whose
    final step takes them (scikit-learn's fit-parameter convention); ``{}`` otherwise or
    when ``groups`` is None.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from devicepool.estimators import GMMUBMClassifier
    >>> sorted(groups_fit_params(make_pipeline(StandardScaler(), GMMUBMClassifier()), [0]))
    ['gmmubmclassifier__groups']
    """
    if groups is None:
        return {}
    try:
        params = inspect.signature(est.fit).parameters
    except (TypeError, ValueError, AttributeError):
        return {}
    if "groups" in params:
        return {"groups": groups}
    from sklearn import get_config

    if get_config().get("enable_metadata_routing", False):
        from sklearn.utils.metadata_routing import get_routing_for_object

        routing = get_routing_for_object(est)
        wanted = routing.consumes("fit", ["groups"]) if hasattr(routing, "consumes") else ()
        return {"groups": groups} if "groups" in wanted else {}
    steps = getattr(est, "steps", None)
    if steps:
        name, last = steps[-1]
        if last is None or last == "passthrough":
            return {}
        return {f"{name}__{k}": v for k, v in groups_fit_params(last, groups).items()}
    return {}


def fit_with_groups(estimator, X, y, groups=None, **fit_params):
    """Fit ``estimator`` on ``(X, y)``, handing the speakers ``groups`` to whatever in it
    takes them (the public way to pass speakers; see :func:`groups_fit_params`).

    Returns the fitted estimator (``estimator.fit``'s return value).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> fit_with_groups(LogisticRegression(), np.eye(4), [0, 1, 0, 1], groups=[0, 0, 1, 1])
    LogisticRegression()
    """
    return estimator.fit(X, y, **groups_fit_params(estimator, groups), **fit_params)
