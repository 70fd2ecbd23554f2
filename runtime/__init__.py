"""The frame engine, nodes, LLM providers and per-conversation state."""
