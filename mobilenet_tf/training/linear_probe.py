"""The head-only baseline of a fine-tuning run, and the start it gives the classifier.

A multinomial logistic regression on the frozen, global-pooled features of the starting
weights (what MediaPipe Model Maker trains by default, done carefully): features of the
whole training photos (the evaluation preprocessing, no augmentation), centred and scaled, and
the regularization strength chosen by 5-fold cross-validation on the training photos
(scikit-learn's ``LogisticRegression``, a well-kept L-BFGS solver, and ``GridSearchCV``;
nothing here is hand-written optimization). Its top-1 on the run's held-out photos is the number the run
is compared with; its weights, with the scaling folded in, are an exact
classifier for the network (``conv_preds`` sees the same pooled features), which
``--classifier_init=linear_probe`` starts fine-tuning from (LP-FT, Kumar et al. 2022).
"""

from __future__ import annotations

import dataclasses

import numpy as np

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse L2 strengths tried
FOLDS = 5
MAX_ITER = 1000
# Features that vary by less than this fraction of their size (a collapsed network: every
# photo gives the same features, up to float rounding) are scaled as if they varied this
# much: scaled to unit spread, their rounding noise would get weights of 1e7, which fit
# nothing and which no int8 model can hold (XNNPACK refuses the export's classifier).
# A working network's features vary by tens of percent of their size.
MIN_RELATIVE_SPREAD = 1e-3


@dataclasses.dataclass
class Probe:
    """A fitted head-only baseline: the classifier (D x C kernel, C bias) on the raw
    pooled features, the strength cross-validation chose, and its scores."""

    kernel: np.ndarray
    bias: np.ndarray
    c: float
    train_examples: int
    cv_top1: float  # mean held-out-fold top-1 at the chosen strength
    eval_top1: float | None = None  # top-1 on the run's held-out photos
    eval_examples: int = 0

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.argmax(features @ self.kernel + self.bias, axis=1)

    def score(self, features: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(features) == np.asarray(labels)))

    def summary(self) -> str:
        held = (f", {100 * self.eval_top1:.1f}% on the {self.eval_examples} held-out photos"
                if self.eval_top1 is not None else "")
        if np.isnan(self.cv_top1):  # a class with one photo: no cross-validation
            return (f"Head-only baseline (logistic regression on the frozen features of "
                    f"{self.train_examples} training photos, C={self.c:.3g}){held}.")
        return (f"Head-only baseline (logistic regression on the frozen features of "
                f"{self.train_examples} training photos, C={self.c:.3g} by cross-"
                f"validation): top-1 {100 * self.cv_top1:.1f}% cross-validated{held}.")

    def record(self) -> dict:
        return {"method": "multinomial logistic regression on frozen pooled features "
                          "(scikit-learn LogisticRegression, C by 5-fold GridSearchCV)",
                "C": self.c, "train_examples": self.train_examples,
                "cv_top1": None if np.isnan(self.cv_top1) else round(self.cv_top1, 6),
                "eval_top1": None if self.eval_top1 is None else round(self.eval_top1, 6),
                "eval_examples": self.eval_examples}


def fit(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> Probe:
    """The baseline fitted on ``features`` (N x D) and int ``labels`` (N)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    x = np.asarray(features, np.float64)
    y = np.asarray(labels).astype(int)
    # Centred and scaled by one number for all features, not per feature: per-feature
    # scaling gives the faint features large weights, which fine-tuning then amplifies.
    mean = x.mean(axis=0)
    std = max(float(np.sqrt(np.mean((x - mean) ** 2))),
              MIN_RELATIVE_SPREAD * float(np.sqrt(np.mean(x ** 2)))) or 1.0
    x = (x - mean) / std
    counts = np.bincount(y)
    folds = int(min(FOLDS, counts[counts > 0].min()))
    model = LogisticRegression(C=1.0, max_iter=MAX_ITER)
    if folds >= 2:
        search = GridSearchCV(model, {"C": list(C_GRID)}, scoring="accuracy",
                              cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
        search.fit(x, y)
        model, c, cv_top1 = (search.best_estimator_, float(search.best_params_["C"]),
                             float(search.best_score_))
    else:  # a class with one photo: no cross-validation, a middle strength
        model.fit(x, y)
        c, cv_top1 = 1.0, float("nan")
    kernel, bias = _full_classes(model, int(y.max()) + 1)
    kernel = kernel / std  # fold the scaling into the classifier
    bias = bias - mean @ kernel
    return Probe(kernel=kernel.astype(np.float32), bias=bias.astype(np.float32), c=c,
                 train_examples=int(len(y)), cv_top1=cv_top1)


def _full_classes(model, num_classes: int):
    """(D x C, C) over all ``num_classes`` labels (sklearn keeps only the seen ones; a
    two-class fit has one row)."""
    coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
    if coef.shape[0] == 1:  # binary: sklearn's one logit is class 1 against class 0
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    kernel = np.zeros((coef.shape[1], num_classes))
    bias = np.full(num_classes, -1e4)  # a class never seen is never predicted
    for row, label in enumerate(model.classes_):
        kernel[:, label], bias[label] = coef[row], intercept[row]
    return kernel, bias
