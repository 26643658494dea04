"""Keyboard use: Tab reaches every field and the submit button, in reading order, on the
sign-in page and the New job form; signing in works with the keyboard alone."""
from __future__ import annotations

from playwright.sync_api import expect

from .conftest import OPERATOR, sign_in_to

# "tag: label" of the focused element: its <label>'s first line, else its aria-label or text.
FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return "body";
  const labelled = e.labels && e.labels.length ? e.labels[0].innerText
                   : (e.getAttribute("aria-label") || e.innerText || e.value || "");
  return e.tagName.toLowerCase() + ": " + labelled.split("\\n")[0].trim();
}"""


def tab_until(page, last: str, limit: int = 90) -> list[str]:
    """Press Tab until the element described ``last`` has the focus; what got it, in order."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(FOCUSED))
        if seen[-1] == last:
            return seen
    raise AssertionError(f"{last!r} never got the focus; Tab went through {seen}")


def in_order(seen: list[str], wanted: list[str]) -> bool:
    remaining = iter(seen)
    return all(item in remaining for item in wanted)


def test_sign_in_with_the_keyboard_alone(live_server, page):
    page.goto("/login?next=/jobs")
    assert page.evaluate(FOCUSED) == "input: Username"           # autofocus
    page.keyboard.type(OPERATOR[0])
    assert tab_until(page, "input: Password") == ["input: Password"]
    page.keyboard.type(OPERATOR[1])
    assert tab_until(page, "button: Sign in") == ["button: Sign in"]
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("header")).to_contain_text(f"{OPERATOR[0]} (operator)")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()


def test_tab_reaches_every_field_of_the_new_job_form_in_order(live_server, page, make_tenant):
    make_tenant("acme", "tier4", name="Acme")
    sign_in_to(page, "/jobs/new/immediate", *OPERATOR)
    page.locator("body").focus()
    seen = tab_until(page, "button: Queue immediate job")
    wanted = ["a: Skip to content", "a: New job", "a: Immediate", "a: Batch upload",
              "select: Tenant", "select: Job type", "select: Handler", "select: Priority",
              "input: Max retries", "textarea: Payload (a JSON object)",
              "summary: More options: runs after other jobs, idempotency key, metadata",
              "button: Queue immediate job"]
    assert in_order(seen, wanted), seen
    assert "body" not in seen, seen                                 # no focus lost on the way

    # The folded options open with the keyboard and their fields come next.
    page.get_by_text("More options: runs after other jobs, idempotency key, metadata").focus()
    page.keyboard.press("Enter")
    seen = tab_until(page, "button: Queue immediate job")
    assert seen == ["input: Runs after (optional job ids)",
                    "select: If one of them fails or is cancelled",
                    "input: Idempotency key (optional)",
                    "textarea: Metadata (optional JSON object)",
                    "button: Queue immediate job"], seen
