"""Evaluation: metrics, leaderboard, plots and the promotion gate."""
