"""Stored frame traces, frames and (later) test runs."""
