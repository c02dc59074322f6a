"""Batched linear sum assignment (docs/design.md §4.4, thesis ch. 6): exact and tensor-op solvers,
weak-duality certificates, F1_LSA metrics and the cycle-length LSA loss.

    from models.assignment import solve
    a = solve(scores, method="exact")          # scores [N, H, W]; see solvers.solve
    a.row_to_col, a.mask, a.objective, a.certified
"""
from .certificate import dual_certificate
from .lsa_loss import assignment_permutation, cycle_lengths, lsa_loss
from .metrics import AssignmentMetrics, assignment_metrics
from .problem import Assignment
from .sinkhorn import sinkhorn_plan
from .solvers import METHODS, solve

__all__ = ["Assignment", "AssignmentMetrics", "METHODS", "assignment_metrics", "assignment_permutation",
           "cycle_lengths", "dual_certificate", "lsa_loss", "sinkhorn_plan", "solve"]
