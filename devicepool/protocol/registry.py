"""The one model registry: the names ``run_protocol``, the CLI and the benchmarks know.

A model is registered as its **template**: an unfitted
:class:`~sklearn.pipeline.Pipeline` whose first step makes the features from the
waveforms (:class:`~devicepool.features.FilterBank`, :class:`~devicepool.features.DFTMagnitude`,
...) and whose last step classifies them. ``spec.make(**params)`` is
``clone(template).set_params(...)``; ``spec.accepts(key)`` is whether ``key`` names one
of the template's parameters (``get_params()``); the feature kind (``spec.feature``)
and the protocol's feature cache key come from the first step (class and parameters),
so models reading the same features share them. The paper's three networks, the two
classical systems, the few-shot embedding and their fusion are registered on import;
:func:`register_model` adds others (registered before :func:`devicepool.cli.main` runs,
they are also choices of the ``devicepool`` command). A factory
``factory(random_state=..., **params)`` of the classifier, with ``feature=``, is still
accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .keys import digest

__all__ = ["FusionFactory", "ModelSpec", "get_model", "register_model", "registered_models",
           "unregister_model"]

#: feature kind -> transformer class in :mod:`devicepool.features`
_FEATURES = {"fbank": "FilterBank", "dft": "DFTMagnitude", "waveform": "Waveform"}
#: feature kinds of templates' first steps other than those above at their defaults
_FEATURE_STEPS: dict[str, Any] = {}


def _make_features(kind, sample_rate):
    """An unfitted feature transformer of ``kind`` at ``sample_rate``."""
    if kind in _FEATURE_STEPS:
        from sklearn.base import clone

        step = clone(_FEATURE_STEPS[kind])
        return step.set_params(sample_rate=sample_rate) if "sample_rate" in step.get_params() else step
    from devicepool import features

    return getattr(features, _FEATURES[kind])(sample_rate=sample_rate)


def _feature_kind(step):
    """The feature kind of a template's first step: ``"fbank"``, ``"dft"`` or ``"waveform"``
    for those transformers at their default parameters (any sample rate), else a name
    with a digest of the class and parameters (the same step, the same kind)."""
    cls = type(step)
    own = {k: v for k, v in step.get_params(deep=False).items() if k not in ("sample_rate", "n_jobs")}
    base = {v: k for k, v in _FEATURES.items()}.get(cls.__name__)
    if base is not None and cls.__module__.startswith("devicepool.features"):
        default = {k: v for k, v in cls().get_params(deep=False).items() if k in own}
        if repr(sorted(default.items())) == repr(sorted(own.items())):
            return base
    key = digest(cls.__module__, cls.__qualname__, sorted(own.items()))
    kind = f"{base or cls.__name__.lower()}-{key[:8]}"
    _FEATURE_STEPS[kind] = step
    return kind


def _matches(params, name):
    """The template parameters ``name`` sets: itself, those it ends (``max_epochs`` sets
    ``clf__max_epochs``) and, for a skorch net's routed parameters (``module__channels``,
    which its ``get_params`` lists only once set), ``<path to the net>__name``."""
    if name in params:
        return [name]
    hits = [k for k in params if k.endswith("__" + name)]
    routed = name.split("__", 1)[0] in ("module", "optimizer", "criterion", "callbacks",
                                        "iterator_train", "iterator_valid", "dataset")
    if not hits and "__" in name and routed:  # skorch nets (they have prefixes_)
        hits = [f"{path}__{name}" for path, value in params.items() if hasattr(value, "prefixes_")]
    return hits


class _Template:
    """``factory(random_state=None, **params)`` -> the classifier (last step) of
    ``make(random_state=..., **params)`` over ``template`` (picklable: it holds the
    template, so joblib workers need no registry)."""

    def __init__(self, name, template):
        self.name, self.template = name, template

    def accepts(self, key):
        return bool(_matches(self.template.get_params(deep=True), key))

    def make(self, **params):
        """``clone(template).set_params(...)``: a short name (``max_epochs``) sets every
        parameter it ends (``clf__max_epochs``; every member's in a fusion) when they agree
        in the template; ``random_state`` seeds every step that has one (none: ignored)."""
        return self._resolve(params)[0]

    def _resolve(self, params):
        """``(pipeline, {short name: the full names it set})`` of :meth:`make`."""
        from sklearn.base import clone

        pipe = clone(self.template)
        keys = pipe.get_params(deep=True)
        resolved, unknown, names = {}, [], {}
        for name, value in params.items():
            hits = names[name] = _matches(keys, name)
            if not hits and name != "random_state":
                unknown.append(name)
            elif name != "random_state" and len({repr(keys.get(k)) for k in hits}) > 1:
                raise ValueError(f"{self.name}: {name!r} is ambiguous (its parameters {hits} differ "
                                 "in the template); give the full name")
            resolved.update(dict.fromkeys(hits, value))
        if unknown:
            fusion = getattr(pipe.steps[-1][1], "estimators", None)
            who = (f"no member of the fusion ({', '.join(n for n, _ in fusion)})"
                   if isinstance(fusion, list) else f"model {self.name!r}")
            raise ValueError(f"{who} takes {sorted(unknown)}")
        return pipe.set_params(**resolved), names

    def __call__(self, random_state=None, **params):
        """The classifier alone (the protocol computes the features once per registered
        feature step): a parameter of an earlier step is an error, never dropped (the
        sample rate, which the protocol sets on both, and ``n_jobs`` excepted)."""
        pipe, names = self._resolve(dict(params, random_state=random_state))
        earlier = tuple(f"{n}__" for n, _ in pipe.steps[:-1])
        for name, full in names.items():
            hits = [k for k in full if k.startswith(earlier)]
            if hits and name not in ("random_state", "sample_rate", "n_jobs"):
                raise ValueError(
                    f"model {self.name!r}: {name!r} sets {hits[0]}, a parameter of its feature "
                    "step, which the protocol computes once per registered model; register a "
                    "model whose template has that feature step (register_model(name, "
                    "Pipeline([('features', ...), ('clf', ...)])))")
        return pipe.steps[-1][1]

    def __repr__(self):
        return f"template of {self.name}: {self.template!r}"


def _fusion_template(members, **params):
    """``Waveform -> FusionClassifier`` over the registered members' templates."""
    from sklearn.pipeline import Pipeline

    from devicepool.estimators import FusionClassifier
    from devicepool.features import Waveform

    return Pipeline([("features", Waveform()), ("clf", FusionClassifier(
        [(name, get_model(name).template) for name in members], **params))])


def FusionFactory(members):  # a class before; the name is kept for callers
    """The factory of a fused model: a :class:`~devicepool.estimators.FusionClassifier`
    (``cv=3``) over the templates of the registered ``members`` (whole pipelines,
    waveforms in), as they are registered now.

    ``FusionFactory(members)(random_state=..., sample_rate=..., **params)`` builds it;
    ``params`` go to every member that takes them (``max_epochs`` to the networks, say),
    and a parameter no member takes is refused. Register it with ``feature="waveform"``,
    or register a template (as the ``fusion`` model is).

    Examples
    --------
    >>> register_model("fusion_sa", FusionFactory(("sa_cnn", "gsv_svm")), "waveform", "SA + GSV")
    >>> clf = get_model("fusion_sa").make_pipeline(16000, max_epochs=2).named_steps["clf"]
    >>> [name for name, _ in clf.estimators], clf.estimators[0][1].named_steps["clf"].max_epochs
    (['sa_cnn', 'gsv_svm'], 2)
    >>> unregister_model("fusion_sa")
    """
    return _Template("fusion", _fusion_template(members))


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes
    ----------
    name : str
        Key in ``models=``, in result files and on the command line.
    label : str
        Row title in Table 3.
    feature : str
        Feature kind the classifier reads: ``"fbank"``, ``"dft"``, ``"waveform"`` (the
        samples, for a classifier that makes its own features) or, for another first
        step of a template, a name with a digest of its class and parameters.
    factory : callable
        ``factory(random_state=..., **params)`` returns an unfitted classifier of an
        utterance set of features (for a template: its last step, made by :meth:`make`).
    attention : bool
        Whether the classifier gives attention weights (``predict_outputs(X).attention``
        or ``attention_weights(X)``), the data of Fig. 2.
    template : Pipeline or None
        The unfitted pipeline (features first) the model is made from; None for a model
        registered by a factory.

    Examples
    --------
    >>> spec = get_model("da_cnn")
    >>> spec.label, spec.feature, spec.attention
    ('DA-CNN', 'fbank', True)
    >>> type(spec.make_features(8000)).__name__, spec.make_features(8000).sample_rate
    ('FilterBank', 8000)
    >>> spec.make(max_epochs=3).named_steps["clf"].max_epochs, spec.accepts("max_epochs")
    (3, True)
    """

    name: str
    label: str
    feature: str
    factory: Callable[..., Any]
    attention: bool = False
    template: Any = None

    def make(self, **params):
        """``clone(template).set_params(...)``, the unfitted pipeline (see
        :func:`register_model` for short names such as ``max_epochs``)."""
        if self.template is None:
            return self.make_pipeline(**params)
        return self.factory.make(**params)

    def make_features(self, sample_rate=16000):
        """The unfitted feature transformer this model reads, at ``sample_rate``."""
        return _make_features(self.feature, sample_rate)

    def accepts(self, key):
        """Whether the model takes the parameter ``key`` (e.g. ``max_epochs``)."""
        if hasattr(self.factory, "accepts"):
            return bool(self.factory.accepts(key))
        import inspect

        try:
            return key in inspect.signature(self.factory).parameters
        except (TypeError, ValueError):
            return False

    def make_classifier(self, sample_rate=16000, **params):
        """The unfitted classifier of the features at ``sample_rate``: the template's last
        step, or ``factory(**params)``.

        A template is also given ``sample_rate`` (unless ``params`` holds one), as is the
        factory of a ``"waveform"`` model, which makes its own features.
        """
        if self.template is not None or self.feature == "waveform":
            params.setdefault("sample_rate", sample_rate)
        return self.factory(**params)

    def make_pipeline(self, sample_rate=16000, **params):
        """``Pipeline([("features", <transformer>), ("clf", <classifier>)])`` at
        ``sample_rate``: :meth:`make` of a template.

        The pipeline takes an utterance set of waveforms or audio paths, as
        ``devicepool train`` fits and saves it.

        Examples
        --------
        >>> pipe = get_model("sa_cnn").make_pipeline(max_epochs=1, random_state=0)
        >>> [(name, type(step).__name__) for name, step in pipe.steps]
        [('features', 'FilterBank'), ('clf', 'SACNNClassifier')]
        """
        if self.template is not None:
            params.setdefault("sample_rate", sample_rate)
            return self.factory.make(**params)
        from sklearn.pipeline import Pipeline

        return Pipeline([("features", self.make_features(sample_rate)),
                         ("clf", self.make_classifier(sample_rate, **params))])


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, model: Any, feature: str | None = None,
                   label: str | None = None, attention: bool = False) -> None:
    """Register a model for :func:`~devicepool.protocol.run_protocol` under ``name``.

    Registering an existing name replaces it.

    Parameters
    ----------
    name : str
        Model key used in ``models=`` and in result files.
    model : Pipeline or callable
        The template: an unfitted :class:`~sklearn.pipeline.Pipeline` whose first step
        makes features from waveforms (its class and parameters are the feature kind:
        models with the same first step share the protocol's cached features) and whose
        last step is the classifier. ``spec.make(**params)`` is
        ``clone(template).set_params(...)``, where a short name (``max_epochs``) sets
        every parameter it ends when they agree in the template (give the full name,
        ``clf__svm__max_iter``, otherwise) and ``random_state`` seeds every step that
        has one. Or a factory: ``factory(random_state=..., **params)`` returns an
        unfitted classifier that takes an utterance set of ``feature``.
    feature : {"fbank", "dft", "waveform"}, optional
        With a factory, the features its classifier reads (default ``"fbank"``):
        :class:`~devicepool.features.FilterBank`, :class:`~devicepool.features.DFTMagnitude`
        (computed once per corpus) or :class:`~devicepool.features.Waveform` (the
        samples; the factory is then also called with ``sample_rate=``, the corpus's
        rate). With a template it must be None or the kind of its first step.
    label : str, optional
        Row title in Table 3 (defaults to ``name``).
    attention : bool, default=False
        Whether the classifier has ``predict_outputs(X)`` whose ``attention`` holds
        time and band weights, or ``attention_weights(X)`` returning them (DA-CNN);
        used for Fig. 2.

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> from sklearn.pipeline import Pipeline
    >>> from devicepool.features import FilterBank
    >>> register_model("majority", Pipeline([("features", FilterBank()), ("clf", DummyClassifier())]))
    >>> get_model("majority").feature, get_model("majority").accepts("strategy")
    ('fbank', True)
    >>> unregister_model("majority")
    """
    if hasattr(model, "steps"):
        steps = model.steps
        if len(steps) < 2 or not hasattr(steps[0][1], "transform"):
            raise ValueError(f"the template of {name!r} must be a Pipeline of at least two steps, "
                             "features first")
        kind = _feature_kind(steps[0][1])
        if feature not in (None, kind):
            raise ValueError(f"feature={feature!r} differs from the template's first step ({kind!r}); "
                             "leave it out")
        _MODELS[name] = ModelSpec(name, label or name, kind, _Template(name, model), bool(attention),
                                  model)
        return
    feature = "fbank" if feature is None else feature
    if feature not in _FEATURES:
        raise ValueError(f"feature must be one of {sorted(_FEATURES)}, got {feature!r}")
    _MODELS[name] = ModelSpec(name, label or name, feature, model, bool(attention))


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


def _register_defaults():
    from sklearn.pipeline import Pipeline

    from devicepool.estimators import DACNNClassifier, DFTCNNClassifier, SACNNClassifier, recipes
    from devicepool.features import DFTMagnitude, FilterBank, Waveform

    def template(features, clf):
        return Pipeline([("features", features), ("clf", clf)])

    register_model("dft_cnn", template(DFTMagnitude(), DFTCNNClassifier()), label="DFT-CNN (baseline)")
    register_model("sa_cnn", template(FilterBank(), SACNNClassifier()), label="SA-CNN")
    register_model("da_cnn", template(FilterBank(), DACNNClassifier()), label="DA-CNN", attention=True)
    register_model("gsv_svm", template(FilterBank(), recipes.make_gsv_svm()),
                   label="GSV-SVM (Gaussian supervector + linear SVM)")
    register_model("gmm_ubm", template(FilterBank(), recipes.make_gmm_ubm()),
                   label="GMM-UBM (MAP device GMMs)")
    register_model("pretrained_lr", template(Waveform(), recipes.make_pretrained_lr(sample_rate=16000)),
                   label="Pretrained embedding + logistic regression (few-shot)")
    # cross-fitted (cv=3: 4 fits of every member), one linear logistic fusion of all members:
    # one of the 8 of the 48 variants of bench/bench_fusion_variants.py at or above the best
    # single member in all 8 corpus x condition cells (bench/results/fusion_variants_cpu.json,
    # docs/classical.md); equal weights, with or without greedy selection, fell below it
    register_model("fusion", _fusion_template(FUSION_MEMBERS, cv=3, weighting="learned",
                                              selection=None),
                   label="Fusion (DA-CNN + DFT-CNN + GSV-SVM)")


#: the members of the registered ``fusion`` model
FUSION_MEMBERS = ("da_cnn", "dft_cnn", "gsv_svm")
_register_defaults()
