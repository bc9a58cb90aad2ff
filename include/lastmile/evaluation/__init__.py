"""Backtests and scores: replaying a history through the production steps."""
