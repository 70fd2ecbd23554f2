"""Experts: stateless specialists the PA routes to (plan, run tools, execute)."""
