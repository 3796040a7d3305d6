"""The one model registry: the names ``run_protocol``, the CLI and the benchmarks know.

A :class:`ModelSpec` says how to build a model's classifier (``factory``), which
features it reads (``"fbank"``: :class:`~devicepool.features.FilterBank`, ``"dft"``:
:class:`~devicepool.features.DFTMagnitude`), its row title in Table 3 and whether it
gives attention weights for Fig. 2. The three networks of the paper are registered on
import; :func:`register_model` adds others (registered before
:func:`devicepool.cli.main` runs, they are also choices of the ``devicepool`` command).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FusionFactory", "ModelSpec", "get_model", "register_model", "registered_models",
           "unregister_model"]

#: feature kind -> transformer class in :mod:`devicepool.features`
_FEATURES = {"fbank": "FilterBank", "dft": "DFTMagnitude", "waveform": "Waveform"}


def _make_features(kind, sample_rate):
    """An unfitted feature transformer of ``kind`` at ``sample_rate``."""
    from devicepool import features

    return getattr(features, _FEATURES[kind])(sample_rate=sample_rate)


class _EstimatorFactory:
    """``factory(**params)`` -> ``devicepool.estimators.<class_name>(**params)`` (picklable)."""

    def __init__(self, class_name):
        self.class_name = class_name

    def __call__(self, **params):
        from devicepool import estimators

        return getattr(estimators, self.class_name)(**params)

    def __repr__(self):
        return f"devicepool.estimators.{self.class_name}"


class _RecipeFactory:
    """``factory(random_state, **params)`` -> ``devicepool.estimators.recipes.<name>(...)``."""

    def __init__(self, name):
        self.name = name

    def __call__(self, random_state=None, **params):
        from devicepool.estimators import recipes

        return getattr(recipes, self.name)(random_state, **params)

    def accepts(self, key):
        import inspect

        from devicepool.estimators import recipes

        return key in inspect.signature(getattr(recipes, self.name)).parameters

    def __repr__(self):
        return f"devicepool.estimators.recipes.{self.name}"


class FusionFactory:
    """The factory of a fused model: a :class:`~devicepool.estimators.FusionClassifier`
    over registered models' whole pipelines (waveforms in).

    ``FusionFactory(members)(random_state=..., sample_rate=..., **params)`` builds it;
    ``params`` go to every member that takes them (``max_epochs`` to the networks, say),
    and a parameter no member takes is refused. Register it with ``feature="waveform"``.

    Examples
    --------
    >>> register_model("fusion_sa", FusionFactory(("sa_cnn", "gsv_svm")), "waveform", "SA + GSV")
    >>> clf = get_model("fusion_sa").make_pipeline(16000, max_epochs=2).named_steps["clf"]
    >>> [name for name, _ in clf.estimators]
    ['sa_cnn', 'gsv_svm']
    >>> unregister_model("fusion_sa")
    """

    def __init__(self, members):
        self.members = tuple(members)

    def __call__(self, random_state=None, sample_rate=16000, cv=3, weighting="equal",
                 validation_fraction=1 / 3, refit=True, **params):
        from devicepool.estimators import FusionClassifier

        unused = set(params)
        members = []
        for name in self.members:
            spec = get_model(name)
            mine = {k: v for k, v in params.items() if spec.accepts(k)}
            unused -= set(mine)
            members.append((name, spec.make_pipeline(sample_rate, random_state=random_state, **mine)))
        if unused:
            raise ValueError(f"no member of the fusion ({', '.join(self.members)}) takes "
                             f"{sorted(unused)}")
        return FusionClassifier(members, cv=cv, weighting=weighting,
                                validation_fraction=validation_fraction, refit=refit,
                                random_state=random_state)

    def accepts(self, key):
        return key in ("sample_rate", "cv", "weighting", "validation_fraction", "refit") or any(
            get_model(name).accepts(key) for name in self.members)

    def __repr__(self):
        return f"fusion of {', '.join(self.members)}"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes
    ----------
    name : str
        Key in ``models=``, in result files and on the command line.
    label : str
        Row title in Table 3.
    feature : {"fbank", "dft", "waveform"}
        Features the classifier reads (``"waveform"``: the samples, for a classifier that
        makes its own features; its factory also gets ``sample_rate``).
    factory : callable
        ``factory(random_state=..., **params)`` returns an unfitted classifier of an
        utterance set of features.
    attention : bool
        Whether the classifier gives attention weights (``predict_outputs(X).attention``
        or ``attention_weights(X)``), the data of Fig. 2.

    Examples
    --------
    >>> spec = get_model("da_cnn")
    >>> spec.label, spec.feature, spec.attention
    ('DA-CNN', 'fbank', True)
    >>> type(spec.make_features(8000)).__name__, spec.make_features(8000).sample_rate
    ('FilterBank', 8000)
    """

    name: str
    label: str
    feature: str
    factory: Callable[..., Any]
    attention: bool = False

    def make_features(self, sample_rate=16000):
        """The unfitted feature transformer this model reads, at ``sample_rate``."""
        return _make_features(self.feature, sample_rate)

    def accepts(self, key):
        """Whether the factory takes the parameter ``key`` (e.g. ``max_epochs``)."""
        if hasattr(self.factory, "accepts"):
            return bool(self.factory.accepts(key))
        if isinstance(self.factory, _EstimatorFactory):
            from devicepool import estimators

            cls = getattr(estimators, self.factory.class_name)
            return key in cls().get_params(deep=False)
        import inspect

        try:
            return key in inspect.signature(self.factory).parameters
        except (TypeError, ValueError):
            return False

    def make_classifier(self, sample_rate=16000, **params):
        """``factory(**params)``: the unfitted classifier of the features at ``sample_rate``.

        A ``"waveform"`` model makes its own features, so its factory is also given
        ``sample_rate`` (unless ``params`` holds one).
        """
        if self.feature == "waveform":
            params.setdefault("sample_rate", sample_rate)
        return self.factory(**params)

    def make_pipeline(self, sample_rate=16000, **params):
        """``Pipeline([("features", <transformer>), ("clf", factory(**params))])``.

        The pipeline takes an utterance set of waveforms or audio paths, as
        ``devicepool train`` fits and saves it.

        Examples
        --------
        >>> pipe = get_model("sa_cnn").make_pipeline(max_epochs=1, random_state=0)
        >>> [(name, type(step).__name__) for name, step in pipe.steps]
        [('features', 'FilterBank'), ('clf', 'SACNNClassifier')]
        """
        from sklearn.pipeline import Pipeline

        return Pipeline([("features", self.make_features(sample_rate)),
                         ("clf", self.make_classifier(sample_rate, **params))])


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, factory: Callable[..., Any],
                   feature: Literal["fbank", "dft", "waveform"] = "fbank",
                   label: str | None = None, attention: bool = False) -> None:
    """Register a model for :func:`~devicepool.protocol.run_protocol` under ``name``.

    Registering an existing name replaces it.

    Parameters
    ----------
    name : str
        Model key used in ``models=`` and in result files.
    factory : callable
        ``factory(random_state=..., **params)`` returns an unfitted sklearn classifier
        that takes an utterance set of features.
    feature : {"fbank", "dft", "waveform"}
        Features the classifier reads: :class:`~devicepool.features.FilterBank`,
        :class:`~devicepool.features.DFTMagnitude` (computed once per corpus) or
        :class:`~devicepool.features.Waveform` (the samples; the factory is then also
        called with ``sample_rate=``, the corpus's rate).
    label : str, optional
        Row title in Table 3 (defaults to ``name``).
    attention : bool, default=False
        Whether the classifier has ``predict_outputs(X)`` whose ``attention`` holds
        time and band weights, or ``attention_weights(X)`` returning them (DA-CNN);
        used for Fig. 2.

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> register_model("majority", lambda random_state=None, **p: DummyClassifier())
    >>> "majority" in registered_models()
    True
    >>> unregister_model("majority")
    """
    if feature not in _FEATURES:
        raise ValueError(f"feature must be one of {sorted(_FEATURES)}, got {feature!r}")
    _MODELS[name] = ModelSpec(name, label or name, feature, factory, bool(attention))


def registered_models():
    """Return the names of the registered models, in table order.

    Examples
    --------
    >>> registered_models()[:3]
    ['dft_cnn', 'sa_cnn', 'da_cnn']
    """
    return list(_MODELS)


def get_model(name):
    """The :class:`ModelSpec` registered under ``name``.

    Examples
    --------
    >>> get_model("dft_cnn").label
    'DFT-CNN (baseline)'
    >>> get_model("resnet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'resnet'; choose from ['dft_cnn', 'sa_cnn', 'da_cnn', ...]
    """
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; choose from {registered_models()}") from None


def unregister_model(name):
    """Remove the model registered under ``name`` (ValueError if there is none)."""
    get_model(name)
    del _MODELS[name]


def _label(name):
    """Table title of a model name, registered or not (results of a model since removed)."""
    spec = _MODELS.get(name)
    return spec.label if spec is not None else name


register_model("dft_cnn", _EstimatorFactory("DFTCNNClassifier"), "dft", "DFT-CNN (baseline)")
register_model("sa_cnn", _EstimatorFactory("SACNNClassifier"), "fbank", "SA-CNN")
register_model("da_cnn", _EstimatorFactory("DACNNClassifier"), "fbank", "DA-CNN", attention=True)
register_model("gsv_svm", _RecipeFactory("make_gsv_svm"), "fbank",
               "GSV-SVM (Gaussian supervector + linear SVM)")
register_model("gmm_ubm", _RecipeFactory("make_gmm_ubm"), "fbank", "GMM-UBM (MAP device GMMs)")
register_model("pretrained_lr", _RecipeFactory("make_pretrained_lr"), "waveform",
               "Pretrained embedding + logistic regression (few-shot)")
#: the members of the registered ``fusion`` model
FUSION_MEMBERS = ("da_cnn", "dft_cnn", "gsv_svm")
register_model("fusion", FusionFactory(FUSION_MEMBERS), "waveform",
               "Fusion (DA-CNN + DFT-CNN + GSV-SVM)")
