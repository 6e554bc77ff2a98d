"""Classification over stored vectors: k-NN voting, open-set and verification thresholds, the logistic head,
zero-shot from concept names, and the :class:`Predictor` that answers a batch of queries.

``knn`` votes, ``openset`` learns thresholds, ``head`` trains the logistic head, ``zeroshot`` scores concept
names, ``training`` builds training data from a store, ``estimators`` holds the scikit-learn estimators and
``predictor`` puts them together for a store.
"""
