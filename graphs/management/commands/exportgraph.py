"""`manage.py exportgraph NAME`: a stored graph as file JSON or Cytoscape elements."""

import json

from django.core.management.base import BaseCommand, CommandError

from graphs.selectors import graph_spec_get
from graphs.spec import cytoscape
from runtime.errors import GraphError


class Command(BaseCommand):
    help = ("Print a stored graph as JSON: the built-in file format (default), or "
            "Cytoscape-style {nodes, edges} elements with --cytoscape.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the graph's name, e.g. v3-framed")
        parser.add_argument("--cytoscape", action="store_true",
                            help="print Cytoscape {nodes, edges} elements for pictures")

    def handle(self, *args, **options) -> None:
        try:
            spec = graph_spec_get(name=options["name"])
        except GraphError as exc:
            raise CommandError(str(exc)) from exc
        data = cytoscape(spec) if options["cytoscape"] else spec.as_data()
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))
