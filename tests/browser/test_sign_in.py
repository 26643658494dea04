"""Signing in and out in a real browser, through the real form."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from .conftest import ADMIN, VIEWER, screenshot, sign_in


def test_sign_in_shows_the_console_with_the_user(live_server, page):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))   # signed out: sent to sign in
    page.goto("/login")                              # again, without "Please log in…" this time
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "sign-in")

    sign_in(page, *ADMIN)
    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.locator("header")).to_contain_text("ada (admin)")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_a_wrong_password_is_refused(live_server, page):
    sign_in(page, ADMIN[0], "not the password")
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.locator("input[name=username]")).to_have_value(ADMIN[0])   # kept for a retry
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_other_roles_sign_in_too(live_server, page):
    sign_in(page, *VIEWER)
    expect(page.locator("header")).to_contain_text("vic (viewer)")


def test_signing_out_returns_to_sign_in(signed_in_page):
    page = signed_in_page
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Signed out, in every browser.")).to_be_visible()
    page.goto("/")                                                # and signed out it stays
    expect(page).to_have_url(re.compile(r"/login"))
