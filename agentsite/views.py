"""Site-level pages: the health check and the home page."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from graphs.selectors import graph_list_with_counts


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


def home(request: HttpRequest) -> HttpResponse:
    """What is running and how to talk to it."""
    return render(request, "home.html", {
        "graphs": graph_list_with_counts(),
        "llm_provider": settings.LLM_PROVIDER,
        "llm_model": settings.LLM_MODEL,
    })
