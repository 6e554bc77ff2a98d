"""Head training speed and accuracy vs scikit-learn LogisticRegression on the same synthetic embeddings.

python benchmarks/bench_head.py            # 200k x 512, 20 concepts (about a minute on 2 cores)
python benchmarks/bench_head.py --smoke    # tiny sizes, proves the script runs
"""

from __future__ import annotations

import argparse

import numpy as np
from _data import emit, synthetic, timed

from vecclf.classify.head import LogisticHead


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.d, args.k, args.repeats = 2000, 32, 5, 1
    from sklearn.linear_model import LogisticRegression

    X, y = synthetic(args.n + args.n // 10, args.d, args.k, seed=0)
    Xtr, ytr, Xte, yte = X[: args.n], y[: args.n], X[args.n :], y[args.n :]
    t_ours, ours = timed(lambda: LogisticHead(C=1.0, class_weight=None).fit(Xtr, ytr), args.repeats)
    t_sk, sk = timed(lambda: LogisticRegression(C=1.0, max_iter=100).fit(Xtr, ytr), args.repeats)
    acc_ours = float(np.mean(ours.predict(Xte).astype(np.int64) == yte))
    acc_sk = float(np.mean(sk.predict(Xte) == yte))
    emit(
        {
            "benchmark": "head_fit",
            "shape": [args.n, args.d],
            "concepts": args.k,
            "ours": {
                "fit_s_median": round(t_ours, 3),
                "accuracy": round(acc_ours, 4),
                "iterations": ours.n_iter_,
                "loss_evaluations": ours.n_evals_,
            },
            "sklearn_lbfgs": {
                "fit_s_median": round(t_sk, 3),
                "accuracy": round(acc_sk, 4),
                "iterations": int(sk.n_iter_[0]),
            },
            "time_ratio_ours_over_sklearn": round(t_ours / t_sk, 3),
            "accuracy_diff_pts": round(100 * (acc_ours - acc_sk), 2),
        }
    )


if __name__ == "__main__":
    main()
