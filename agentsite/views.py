"""Site-level pages: the health check, sign-in and sign-out, the chat page, the test runner page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.views import LoginView, LogoutView, redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from graphs.picture import graph_svg
from graphs.selectors import graph_names, graph_spec_get
from runtime.agent.nodes.ui import current_controls
from runtime.api.auth import anonymous_session_start
from runtime.api.oidc import oidc_enabled
from runtime.conversations import busy, selectors
from runtime.conversations.eventlog import chat_last_seq, chat_message_start
from runtime.conversations.owners import conversation_resolve, owner_resolve
from runtime.errors import AuthFailed

HISTORY_ON_PAGE = 50
"""How many past messages the chat page shows when it opens."""
ZERO_ID = "00000000-0000-0000-0000-000000000000"
"""Stands for a message's id in the trace link the page is given (chat.js fills it in)."""


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


class SignInView(LoginView):
    """The sign-in page: username and password, and "Sign in with …" when OIDC is configured.

    A failed OIDC login comes back here (`LOGIN_REDIRECT_URL_FAILURE`) with
    `?oidc=failed` and is told so; a signed-in visitor goes straight on.
    """

    template_name = "login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["oidc"] = oidc_enabled()
        context["oidc_name"] = settings.OIDC_PROVIDER_NAME
        context["oidc_failed"] = self.request.GET.get("oidc") == "failed"
        return context


class SignOutView(LogoutView):
    """Sign out (POST only, as Django requires) and land on the sign-in page, told so."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        signed_in = request.user.is_authenticated
        response = super().post(request, *args, **kwargs)
        if signed_in:
            # After logout() flushed the session: the note goes into the new one.
            messages.info(request, "You have signed out.")
        return response


def _graph_pictures() -> list[dict[str, str]]:
    """Every stored graph's picture, drawn on the server (the switcher flips between them)."""
    # graph_svg escapes every label, so its markup is safe to embed as it is.
    # Top to bottom: the HUD is a narrow panel, where a left-to-right picture is shrunk
    # until its labels cannot be read.
    return [{"name": name,
             "svg": mark_safe(graph_svg(graph_spec_get(name=name), direction="down"))}
            for name in graph_names()]


def _history_on_page(conversation_id: int) -> list[dict[str, Any]]:
    """The last messages as the page draws them: each answer with its rating and the
    queries it was read from (its `result` events)."""
    history = selectors.conversation_history(conversation_id=conversation_id,
                                             limit=HISTORY_ON_PAGE)
    ratings = selectors.conversation_ratings(conversation_id=conversation_id)
    results = selectors.conversation_results(
        conversation_id=conversation_id,
        message_ids=[str(m.message_id) for m in history if m.role == "assistant"])
    return [{"role": m.role, "text": m.text, "message_id": str(m.message_id),
             "rating": ratings.get(str(m.message_id), 0),
             "results": results.get(str(m.message_id), [])} for m in history]


@require_GET
@ensure_csrf_cookie
def chat(request: HttpRequest) -> HttpResponse:
    """The chat page: transcript, controls, machines and the HUD of the caller's conversation."""
    session = request.session
    try:
        # An anonymous visitor's session starts here: the socket finds the conversation by
        # its key, so the cookie must be sent before the page's script connects.
        owner = owner_resolve(user=request.user, session_key=session.session_key or "",
                              session_start=lambda: anonymous_session_start(session))
    except AuthFailed:
        return redirect_to_login(request.get_full_path())
    # Looking creates nothing: a first visit is drawn from the state a conversation
    # starts with, and the socket creates the conversation when it connects.
    conversation = conversation_resolve(owner=owner, chat="main", create=False)
    if conversation is None:
        state, history, last_seq = selectors.conversation_state_new(), [], 0
    else:
        state = selectors.conversation_state(conversation_id=conversation.id)
        history = _history_on_page(conversation.id)
        last_seq = chat_last_seq(conversation_id=conversation.id)
        running = busy.busy_message(conversation_id=conversation.id)
        start = running and chat_message_start(conversation_id=conversation.id,
                                                message_id=running)
        if start:
            # Drawn mid-answer: the history holds neither its question nor its answer yet,
            # so the socket replays that message's events from its first (`accepted`).
            last_seq = min(last_seq, start - 1)
    boot = {
        "conversation": conversation.id if conversation else None,
        "chat": "main",
        "graph": state.graph_name,
        "graphs": graph_names(),
        # Events after this number happened after the page was drawn: the socket
        # resumes from here so nothing between render and connect is lost.
        "last_seq": last_seq,
        "history": history,
        # Staff see a link to an answer's trace under "How I found this".
        "trace_url": reverse("admin:traces_messagetrace_by_message", args=[ZERO_ID])
                     if request.user.is_staff else "",
        "memory": state.memory,
        "machines": state.ui["machines"],
        "controls": current_controls(state.ui),
        # Where the page sends someone whose session ended ("sign in again").
        "login_url": resolve_url(settings.LOGIN_URL) + "?"
                     + urlencode({"next": request.path}, safe="/"),
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
