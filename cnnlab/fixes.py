"""Which test errors a change fixed and which it broke: run A against run B on the same 10k test images.

Built on `compare.evaluate_run` (cached predictions of a run's best/last weights). "Fixed" are the images
A gets wrong and B gets right, most confident (A's confidence in its wrong answer) first; "broken" the
reverse, ordered by B's confidence in its wrong answer. Works for any two runs with saved weights: a
fork against its parent, a sweep's best trial against its worst.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compare import Evaluation
from .errors import LabError


@dataclass
class ErrorDiff:
    """The errors B fixed and broke relative to A."""

    a: Evaluation
    b: Evaluation
    fixed: np.ndarray  # test indices: A wrong, B right; A's wrong confidence descending
    broken: np.ndarray  # test indices: A right, B wrong; B's wrong confidence descending

    def counts(self, which: str) -> np.ndarray:
        """Count per true digit (10,) of `fixed` or `broken`."""
        return np.bincount(self.a.labels[self._idx(which)], minlength=10)

    def of_digit(self, which: str, digit: int | None) -> np.ndarray:
        """`fixed`/`broken` indices of one true digit (all digits for None), order kept."""
        idx = self._idx(which)
        return idx if digit is None else idx[self.a.labels[idx] == int(digit)]

    def _idx(self, which: str) -> np.ndarray:
        if which not in ("fixed", "broken"):
            raise ValueError(f"which must be 'fixed' or 'broken', got {which!r}")
        return self.fixed if which == "fixed" else self.broken

    def captions(self, indices: np.ndarray) -> list[str]:
        """One thumbnail caption per index: both predictions with their confidences."""
        a, b = self.a, self.b
        return [f"A {a.preds[i]} {a.confidence[i]:.0%} · B {b.preds[i]} {b.confidence[i]:.0%}" for i in indices]

    def rows(self, indices: np.ndarray) -> list[dict]:
        """A table of the same images."""
        a, b = self.a, self.b
        return [{"test index": int(i), "true": int(a.labels[i]), "A predicts": int(a.preds[i]),
                 "A confidence": round(float(a.confidence[i]), 4), "B predicts": int(b.preds[i]),
                 "B confidence": round(float(b.confidence[i]), 4)} for i in indices]


def error_diff(a: Evaluation, b: Evaluation) -> ErrorDiff:
    """Errors of A that B fixed and errors B introduced, each most confident first."""
    if len(a.labels) != len(b.labels) or not np.array_equal(a.labels, b.labels):
        raise LabError("the two evaluations are not on the same test images")
    a_ok, b_ok = a.preds == a.labels, b.preds == b.labels
    fixed = np.nonzero(~a_ok & b_ok)[0]
    broken = np.nonzero(a_ok & ~b_ok)[0]
    fixed = fixed[np.argsort(-a.confidence[fixed], kind="stable")]
    broken = broken[np.argsort(-b.confidence[broken], kind="stable")]
    return ErrorDiff(a, b, fixed, broken)
