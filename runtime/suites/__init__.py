"""Markdown test suites: parser, checks and runner (see testcases/README.md)."""
