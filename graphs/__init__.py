"""Graph definitions as data: graphs, nodes and edges."""
