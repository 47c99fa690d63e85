"""Evaluation harness: method grids, random-skipping controls, time-to-accuracy, Pareto fronts."""
