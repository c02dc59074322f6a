"""Differentiable pieces of GroundMT: CLIP text tower on distributions, Marian student and
splice, n-dimensional contrastive loss, assignment solvers and the grounded system."""
