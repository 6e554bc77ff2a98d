"""Hypothesis over the Python API: bad input gives a typed VecclfError, accepted input round-trips exactly."""

from __future__ import annotations

import shutil
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecclf.classify.estimators import KNNClassifier, LogisticHead
from vecclf.errors import InvalidInputError, NotFoundError, VecclfError
from vecclf.store import Store

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
        ok = rows > 0 and dim == 8 and np.isfinite(fill)  # an all-zero row is similar to nothing, yet valid
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
    q = clf.embed(texts=["query"])[0].vector[None, :]
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
    assert len(report.added) + len(report.duplicates) == len(good)  # a text seen before is a duplicate
    added = clf.store.get(report.ids)
    assert len({r.text for r in added}) == len(added) <= len({t.strip() for t in good})  # each stored once
    assert len(report.failures) == len(texts) - len(good)
    assert clf.store.count() == before + len(report.added)
    assert len(clf.store.get([d["id"] for d in report.duplicates])) == len(report.duplicates)


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A tiny-CLIP store with two text concepts, for CLI fuzzing."""
    from vecclf.cli import main

    path = tmp_path_factory.mktemp("cli") / "store"
    assert main(["init", "--model", "tiny-clip", "--store", str(path)]) == 0
    assert main(["add", "--text", "red apple", "--text", "cherry", "--concept", "red", "--store", str(path)]) == 0
    assert main(["add", "--text", "sky", "--concept", "blue", "--store", str(path)]) == 0
    return path


words = st.text(max_size=30)
numbers = st.one_of(st.integers(-5, 5), st.integers(-(2**70), 2**70)).map(str) | words


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    command=st.sampled_from(["predict", "search", "verify", "delete", "concepts", "add", "eval", "train"]),
    text=words,
    number=numbers,
    name=words,
    extra=st.lists(words, max_size=2),
)
def test_cli_answers_every_input_with_a_status_not_a_traceback(
    cli_store, capsys, command: str, text: str, number: str, name: str, extra: list[str]
) -> None:
    from vecclf.cli import main

    argv = {
        "predict": ["predict", "--text", text, "--k", number, "--top", number, *extra],
        "search": ["search", "--text", text, "--k", number, "--concept", name],
        "verify": ["verify", "--text", text, "--concept", name],
        "delete": ["delete", number, *extra],
        "concepts": ["concepts", *extra[:1], name, *extra[1:]],
        "add": ["add", "--text", text, "--concept", name, "--negative", *extra[:1], *extra[1:]],
        "eval": ["eval", "--k", number, "--folds", number],
        "train": ["train", "--C", number],
    }[command]
    store = Path(tempfile.mkdtemp(prefix="vecclf-fuzz-")) / "store"
    shutil.copytree(cli_store, store)  # every example starts from the same store: failures replay exactly
    try:
        code = main([*argv, "--store", str(store), "--json"])
    except SystemExit as exc:  # argparse: usage errors exit 2 with a message
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code in (0, 1, 2, 3), (argv, code, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if code not in (0, 3):
        assert err.strip(), argv  # a failure always says why
    with Store.open(store, read_only=True) as opened:  # and the store still opens, consistent
        ids, _ = opened.vectors("joint")
        assert opened.count("joint") == len(ids)
    shutil.rmtree(store.parent)
