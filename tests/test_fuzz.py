"""Hypothesis over the Python API: bad input gives a typed VecclfError, accepted input round-trips exactly."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecclf.errors import InvalidInputError, NotFoundError, VecclfError
from vecclf.head import LogisticHead
from vecclf.knn import KNNClassifier

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@FAST
@given(rows=st.integers(0, 4), dim=st.integers(0, 9), fill=floats)
def test_estimators_reject_bad_vectors_with_typed_errors(rows: int, dim: int, fill: float) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 8)).astype(np.float32)
    y = np.array(["a", "b", "c"] * 10)
    Q = np.full((rows, dim), fill, dtype=np.float32)
    for model in (KNNClassifier(k=3).fit(X, y), LogisticHead(max_iter=5).fit(X, y)):
        ok = rows > 0 and dim == 8 and np.isfinite(fill) and (fill != 0 or isinstance(model, LogisticHead))
        if ok:
            assert model.predict_proba(Q).shape == (rows, 3)
        else:
            with pytest.raises(InvalidInputError):
                model.predict_proba(Q)


@FAST
@given(name=st.text(max_size=40))
def test_concept_names_are_validated_or_round_trip(clf, name: str) -> None:
    try:
        clf.store.create_concepts([name])
    except InvalidInputError:
        return
    clean = unicodedata.normalize("NFC", name).strip()
    assert clean in [c["name"] for c in clf.concepts()]


@FAST
@given(k=st.integers(-5, 10**6), concept=st.one_of(st.none(), st.text(max_size=10)))
def test_search_and_predict_parameters(clf, k: int, concept: str | None) -> None:
    if clf.store.count() == 0:
        clf.add_texts(["alpha", "beta", "gamma"], ["x"])
    q = clf.embed(texts=["query"])[0][2][None, :]
    try:
        hits = clf.search_vectors("joint", q, k=k, concept=concept)
    except (InvalidInputError, NotFoundError) as exc:
        assert k <= 0 or concept is not None, exc
        return
    assert k > 0 and len(hits[0]) <= min(k, 3)
    try:
        preds = clf.predict_vectors("joint", q, k=k)
    except InvalidInputError:
        assert k <= 0
        return
    assert preds[0].nearest == "x" and len(preds[0].neighbours) <= 3


@FAST
@given(texts=st.lists(st.text(max_size=30), min_size=1, max_size=5))
def test_add_texts_reports_bad_items_and_keeps_the_rest(clf, texts: list[str]) -> None:
    before = clf.store.count()
    try:
        report = clf.add_texts(texts, ["t"])
    except VecclfError as exc:  # only ever a typed error
        pytest.fail(f"add_texts raised {exc!r}; bad items should be reported, not raised")
    good = [t for t in texts if t.strip() and "\x00" not in t]
    assert len(report.added) == len(good)
    assert len(report.failures) == len(texts) - len(good)
    assert clf.store.count() == before + len(good)
