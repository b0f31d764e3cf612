"""Secondary suppression: no hidden count can be worked out from the counts that are published.

Hiding the small counts of a table (primary suppression) is not enough when totals are published as
well: a total minus the visible cells gives back a hidden cell. Statistical offices therefore hide more
cells (secondary or complementary suppression; CBS's tau-ARGUS is the reference). This module does that
for any set of counts tied by linear relations, with linear programming (scipy's HiGHS):

- The reader knows every published count, every relation (a total is the sum of its cells, one count is
  at most another) and that counts are not negative. A published 0 is a real 0 and is never hidden, so
  the reader also knows that every hidden count is at least 1.
- A hidden cell is protected when the published figures allow it to be at least `protection` more than it
  is, and at least `small` (so nobody can tell from them that it is below `small`); every hidden cell,
  also a secondary one, has room of at least `protection` between the least and the most it can be.
- For a cell that is not yet protected, one linear program finds the cheapest change of the whole table
  that keeps every relation true, raises the cell by what it needs and moves only hidden cells, plus
  published ones at a cost of their value (+1) per unit moved: the classic network-flow heuristic for
  2-dimensional tables (Kelly, Golden and Assad), here over all linked tables at once. The published
  cells it moves are hidden too; the changed table is then one the reader cannot rule out, so the cell is
  protected, and stays protected as more cells are hidden.

The result is not guaranteed to be the fewest cells (that is an integer program), but it is checked: the
test attacks every export with the reader's own linear programs (tests/service/test_export_disclosure.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_array

# Relations as {cell index: coefficient}: sum(coefficient * x[cell]) == 0, or <= 0.
Relation = Mapping[int, int]

_CHEAP = 1e-4        # cost per unit of moving a cell that is hidden already
_MOVED = 1e-6        # a move below this is rounding noise of the solver


@dataclass(frozen=True)
class Relations:
    equal: Sequence[Relation] = ()
    at_most: Sequence[Relation] = ()
    lower: Mapping[int, int] = field(default_factory=dict)   # x[cell] >= lower[cell], known from other figures


@dataclass(frozen=True)
class Suppression:
    primary: frozenset[int]      # 0 < value < small
    secondary: frozenset[int]    # hidden so that no primary one can be worked out

    @property
    def hidden(self) -> frozenset[int]:
        return self.primary | self.secondary


def _matrix(rows: Sequence[Relation], n: int) -> csr_array:
    data, ri, ci = [], [], []
    for r, relation in enumerate(rows):
        for c, coefficient in relation.items():
            if coefficient:
                data.append(float(coefficient))
                ri.append(r)
                ci.append(c)
    return csr_array((data, (ri, ci)), shape=(len(rows), n))


class _Table:
    def __init__(self, values: Sequence[int], relations: Relations) -> None:
        self.v = np.asarray(values, dtype=float)
        self.n = len(values)
        self.eq = _matrix(relations.equal, self.n) if relations.equal else None
        self.le = _matrix(relations.at_most, self.n) if relations.at_most else None
        # The least each non-zero cell can be in the reader's eyes (a hidden count is never 0).
        self.floor = np.array([max(1, relations.lower.get(i, 0)) if values[i] else 0 for i in range(self.n)],
                              dtype=float)
        self.cap = 10.0 * (float(self.v.max(initial=0.0)) + 100.0)

    def interval(self, cell: int, hidden: frozenset[int] | set[int]) -> tuple[float, float]:
        """The least and the most x[cell] can be, given the published cells (the reader's attack)."""
        # No hidden count is unbounded in truth; a cap far above every count keeps HiGHS away from
        # "unbounded" (which its presolve may report as "infeasible"). Reaching it means "no upper bound".
        cap = self.cap
        bounds = [(self.floor[i], cap) if i in hidden else (self.v[i], self.v[i]) for i in range(self.n)]
        out = []
        for sign in (1.0, -1.0):
            objective = np.zeros(self.n)
            objective[cell] = sign
            result = linprog(objective, A_ub=self.le, b_ub=None if self.le is None else np.zeros(self.le.shape[0]),
                             A_eq=self.eq, b_eq=None if self.eq is None else np.zeros(self.eq.shape[0]),
                             bounds=bounds, method="highs")
            if result.status != 0:
                raise RuntimeError(f"suppression: the attack on cell {cell} failed: {result.message}")
            else:
                out.append(sign * float(result.fun))
        return out[0], out[1]

    def cover(self, cell: int, need: float, hidden: set[int]) -> set[int]:
        """The published cells to hide so that x[cell] can be `need` more than it is (the cheapest change)."""
        n, v = self.n, self.v
        cost = np.array([_CHEAP if i in hidden else v[i] + 1.0 for i in range(n)])
        objective = np.concatenate([cost, cost])                 # up[i], down[i] >= 0; y = up - down
        up_bounds = [(0.0, 0.0) if not v[i] else (0.0, None) for i in range(n)]
        down_bounds = [(0.0, v[i] - self.floor[i]) for i in range(n)]
        up_bounds[cell] = (need, None)
        down_bounds[cell] = (0.0, 0.0)
        a_eq = b_eq = a_ub = b_ub = None
        if self.eq is not None:
            a_eq = _hstack(self.eq, -self.eq)
            b_eq = np.zeros(self.eq.shape[0])
        if self.le is not None:                                  # le @ (v + y) <= 0
            a_ub = _hstack(self.le, -self.le)
            b_ub = -(self.le @ v)
        result = linprog(objective, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                         bounds=up_bounds + down_bounds, method="highs")
        if result.status != 0:
            raise RuntimeError(f"suppression: no way to protect cell {cell}: {result.message}")
        moved = result.x[:n] + result.x[n:]
        return {i for i in range(n) if moved[i] > _MOVED and i not in hidden}


def _hstack(left: csr_array, right: csr_array) -> csr_array:
    from scipy.sparse import hstack

    return csr_array(hstack([left, right], format="csr"))


def suppress(values: Sequence[int], relations: Relations, *, small: int, protection: int) -> Suppression:
    """Which cells to hide: every count 1..small-1, and the cheapest further ones (by value) so that each
    hidden cell keeps the room described above. A published 0 stays published."""
    if protection < 1:
        raise ValueError("protection must be at least 1")
    table = _Table(values, relations)
    primary = {i for i, x in enumerate(values) if 0 < x < small}
    hidden = set(primary)
    todo = sorted(primary, key=lambda i: (values[i], i))
    done: set[int] = set()
    while todo:
        cell = todo.pop(0)
        if cell in done:
            continue
        done.add(cell)
        if cell in primary:
            need = float(max(small, values[cell] + protection) - values[cell])
        else:
            low, high = table.interval(cell, hidden)
            if high - low >= protection - _MOVED:
                continue
            need = float(protection) - (values[cell] - low)
        more = table.cover(cell, need, hidden)
        hidden |= more
        todo += sorted(more, key=lambda i: (values[i], i))
    return Suppression(frozenset(primary), frozenset(hidden - primary))


def interval(values: Sequence[int], relations: Relations, hidden: frozenset[int] | set[int],
             cell: int) -> tuple[float, float]:
    """What a reader of the published cells can work out about x[cell]: its least and most value."""
    return _Table(values, relations).interval(cell, hidden)
