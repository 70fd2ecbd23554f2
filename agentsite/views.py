"""Site-level pages: the health check, the chat page and the test runner page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from graphs.picture import graph_svg
from graphs.selectors import graph_names, graph_spec_get
from runtime import conversations as conv
from runtime.chatlog import chat_last_seq
from runtime.nodes.ui import current_controls

HISTORY_ON_PAGE = 50
"""How many past messages the chat page shows when it opens."""


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


def _chat_owner(request: HttpRequest) -> dict[str, Any] | None:
    """Who owns the page's conversation: the user, an anonymous session, or nobody allowed."""
    if request.user.is_authenticated:
        return {"user": request.user}
    if not settings.AGENTSITE_ALLOW_ANONYMOUS:
        return None
    if not request.session.session_key:
        # The socket finds the conversation by this session key, so it must exist
        # (and its cookie be sent) before the page's script connects.
        request.session.modified = True
        request.session.save()
    return {"session_key": request.session.session_key}


def _graph_pictures() -> list[dict[str, str]]:
    """Every stored graph's picture, drawn on the server (the switcher flips between them)."""
    # graph_svg escapes every label, so its markup is safe to embed as it is.
    return [{"name": name, "svg": mark_safe(graph_svg(graph_spec_get(name=name)))}
            for name in graph_names()]


@require_GET
@ensure_csrf_cookie
def chat(request: HttpRequest) -> HttpResponse:
    """The chat page: transcript, controls, machines and the HUD of the caller's conversation."""
    owner = _chat_owner(request)
    if owner is None:
        return redirect_to_login(request.get_full_path())
    conversation = conv.conversation_get_or_create(**owner, chat="main")
    state = conv.conversation_state(conversation_id=conversation.id)
    history = conv.conversation_history(conversation_id=conversation.id, limit=HISTORY_ON_PAGE)
    boot = {
        "conversation": conversation.id,
        "chat": "main",
        "graph": state.graph_name,
        "graphs": graph_names(),
        # Events after this number happened after the page was drawn: the socket
        # resumes from here so nothing between render and connect is lost.
        "last_seq": chat_last_seq(conversation_id=conversation.id),
        "history": [{"role": m.role, "text": m.text} for m in history],
        "memory": state.memory,
        "machines": state.ui["machines"],
        "controls": current_controls(state.ui),
    }
    return render(request, "chat.html", {
        "boot": boot,
        "pictures": _graph_pictures(),
        "active_graph": state.graph_name,
        "llm_provider": settings.LLM_PROVIDER,
        "llm_model": settings.LLM_MODEL,
    })


@require_GET
@staff_member_required
def tests_page(request: HttpRequest) -> HttpResponse:
    """The test runner page: live suite progress from `/ws/test`, polling as a fallback."""
    return render(request, "tests.html", {})
