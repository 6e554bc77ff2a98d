"""The estimators are scikit-learn estimators: its own checks, clone, cross-validation, grid search, pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer
from sklearn.utils.estimator_checks import parametrize_with_checks

import vecclf
from vecclf import KNNClassifier, LogisticHead


def _blobs(seed: int = 0, n: int = 240, d: int = 16, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 2
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), np.array([f"c{v}" for v in y])


@parametrize_with_checks([KNNClassifier(), LogisticHead(max_iter=50)])
def test_scikit_learn_estimator_checks(estimator, check) -> None:  # type: ignore[no-untyped-def]
    """Every check runs; none is skipped by us. (scikit-learn itself skips its pandas and array-API checks
    when pandas or SCIPY_ARRAY_API are absent, as here.)"""
    check(estimator)


@pytest.mark.parametrize("model", [KNNClassifier(k=5), LogisticHead()], ids=["knn", "head"])
def test_clone_cross_validation_grid_search_and_pipeline(model) -> None:  # type: ignore[no-untyped-def]
    X, y = _blobs()
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params() and not hasattr(copy, "classes_")
    scores = cross_val_score(model, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8
    grid = {"k": [1, 5]} if isinstance(model, KNNClassifier) else {"C": [0.1, 10.0]}
    search = GridSearchCV(model, grid, cv=3).fit(X, y)
    assert search.best_params_ in [dict(zip(grid, [v])) for v in next(iter(grid.values()))]
    assert search.best_score_ > 0.8 and search.score(X, y) > 0.8
    pipe = make_pipeline(Normalizer(), clone(model)).fit(X, y)
    assert set(pipe.predict(X)) <= set(np.unique(y)) and pipe.score(X, y) > 0.8


def test_labels_keep_their_type_and_open_set_is_explicit() -> None:
    X, y = _blobs(1)
    ints = np.array([int(v[1:]) for v in y])
    for model in (KNNClassifier(k=5), LogisticHead()):
        fitted = model.fit(X, ints)
        assert fitted.classes_.tolist() == [0, 1, 2] and fitted.predict(X).dtype == ints.dtype
    far = -X[:20] * 50  # opposite directions: nothing stored is similar
    knn = KNNClassifier(k=5, unknown_quantile=0.05).fit(X, y)
    assert set(knn.predict(far)) <= set(knn.classes_)  # predict answers within classes_
    assert "unknown" in set(knn.predict_open(far))
    assert knn.predict_open(X[:5], unknown=-1).tolist() == knn.predict(X[:5]).tolist()


def test_not_fitted_error_is_scikit_learns() -> None:
    assert issubclass(vecclf.NotFittedError, SklearnNotFittedError)
    assert issubclass(vecclf.NotFittedError, vecclf.VecclfError)
    for model in (KNNClassifier(), LogisticHead()):
        with pytest.raises(SklearnNotFittedError):
            model.predict(np.ones((1, 4), np.float32))
