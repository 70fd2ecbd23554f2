"""Every response carries the Content-Security-Policy, and no page needs what it refuses.

The policy allows scripts and styles only from the site's files, so a page with an
inline `<script>`, a `<style>` element, a `style="..."` attribute or an `on...=`
handler would break under it. The pages are rendered with real data (a trace, a
test run, graphs with revisions) and scanned for each of those.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.urls import reverse

from graphs.models import Graph
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.suites import runs as testruns
from tests.helpers import send
from traces.models import MessageTrace

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.IGNORECASE)
HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)


@pytest.fixture(autouse=True)
def _plain_static(settings):
    """Pages render without `collectstatic`, whatever DEBUG the environment set."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def inline_code(html: str) -> list[str]:
    """Everything in `html` the policy would refuse: inline scripts, styles and handlers."""
    found = [m.group(0) for m in SCRIPT.finditer(html)
             if "src=" not in m.group(1) and 'type="application/json"' not in m.group(1)]
    found += [html[max(m.start() - 60, 0):m.end() + 40] for m in INLINE_STYLE.finditer(html)]
    found += [m.group(0)[:120] for m in HANDLER.finditer(html)]
    return found


def test_the_policy_refuses_inline_code():
    """Scripts and styles only from this site, sockets back to it, never framed."""
    policy = django_settings.AGENTSITE_CONTENT_SECURITY_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "ws:" in directives["connect-src"] and "wss:" in directives["connect-src"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_every_kind_of_response_carries_it(client, admin_client, graphs):
    """Pages, the admin, JSON, redirects and errors all carry the header."""
    policy = django_settings.AGENTSITE_CONTENT_SECURITY_POLICY
    for response in (client.get("/login/"), client.get("/health"), client.get("/admin/login/"),
                     client.get("/no-such-page"), admin_client.get("/"),
                     admin_client.get("/api/state"), admin_client.get("/admin/")):
        assert response["Content-Security-Policy"] == policy, response


def test_a_view_may_send_its_own(rf, settings):
    """A response that already has a policy keeps it."""
    from django.http import HttpResponse

    from agentsite.middleware import content_security_policy

    def view(request):
        response = HttpResponse("x")
        response["Content-Security-Policy"] = "default-src 'none'"
        return response

    assert content_security_policy(view)(rf.get("/"))["Content-Security-Policy"] == (
        "default-src 'none'")
    settings.AGENTSITE_CONTENT_SECURITY_POLICY = ""
    assert "Content-Security-Policy" not in content_security_policy(
        lambda request: HttpResponse("x"))(rf.get("/"))


def test_templates_and_static_files_have_no_inline_code():
    """No template writes inline script or style; no script sets a style attribute.

    (Scripts may set `element.style.height`: the policy governs markup, not the CSSOM.)
    """
    for template in sorted((ROOT / "templates").rglob("*.html")):
        assert inline_code(template.read_text()) == [], template
    for script in sorted((ROOT / "static" / "agentsite").glob("*.js")):
        text = script.read_text()
        assert 'setAttribute("style"' not in text and "cssText" not in text, script


def test_rendered_pages_have_no_inline_code(admin_client, graphs, settings):
    """The chat, sign-in, tests and every admin page of ours render without inline code."""
    settings.OIDC_RP_CLIENT_ID = "agentsite"
    settings.OIDC_OP_TOKEN_ENDPOINT = "https://idp.example.com/token"
    admin = get_user_model().objects.get(username="admin")
    conversation = conversation_resolve(owner=Owner(user=admin))
    result = send(conversation.id, "how many customers are there?")
    send(conversation.id, "hello")
    trace = MessageTrace.objects.get(message_id=result.message_id)
    run = testruns.run_start(graph="v3-framed", target="in-process")
    suite = testruns.run_suite_start(run=run, name="smoketest", path="testcases/smoketest.md")
    testruns.run_check_record(suite=suite, step="send: hello", check="reply contains: Hello",
                               passed=False, detail="got Hi", duration_ms=1.0)
    testruns.run_finish(run=run, status="finished")
    graph = Graph.objects.get(name="v3-framed")
    admin_client.post(reverse("admin:graphs_graph_duplicate", args=[graph.pk]))
    pages = [
        "/", "/tests", "/admin/", "/admin/graphs/graph/", f"/admin/graphs/graph/{graph.pk}/change/",
        reverse("admin:graphs_graph_revisions", args=[graph.pk]),
        reverse("admin:graphs_graph_diff", args=[graph.pk]) + "?a=1&b=1",
        reverse("admin:graphs_graph_import"),
        "/admin/runtime/conversation/", f"/admin/runtime/conversation/{conversation.id}/change/",
        "/admin/traces/messagetrace/", f"/admin/traces/messagetrace/{trace.pk}/change/",
        f"/admin/traces/messagetrace/?conversation__id__exact={conversation.id}",
        "/admin/traces/testrun/", f"/admin/traces/testrun/{run.pk}/change/",
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert inline_code(response.content.decode()) == [], url
    admin_client.post("/logout/")
    response = admin_client.get("/login/?oidc=failed")
    assert response.status_code == 200 and inline_code(response.content.decode()) == []
