"""A tenant's event webhooks in a real browser: an operator subscribes a real receiver, reads
the signing secret once, and the page's delivery log follows the delivery to "completed"
without a reload while the live server's runner runs the job and then delivers its event."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.handlers.conftest import http_receiver  # noqa: F401  (a real HTTP server)

from .conftest import OPERATOR, screenshot, sign_in_to


def test_an_operator_subscribes_and_watches_the_delivery_arrive(live_server, page, make_tenant,
                                                               page_errors,
                                                               http_receiver):  # noqa: F811
    service = live_server.service
    make_tenant("acme", "tier4", name="Acme")
    sign_in_to(page, "/tenants/acme", *OPERATOR)
    section = page.locator("#webhooks-section")
    expect(section.get_by_role("heading", name="Event webhooks")).to_be_visible()

    form = section.locator("form.webhook-form")
    form.get_by_label("URL").fill(http_receiver.url)
    form.get_by_role("checkbox", name="job.completed").check()
    with page.expect_navigation():
        form.get_by_role("button", name="Subscribe").click()

    secret_box = page.locator("#webhook-secret")
    expect(secret_box).to_contain_text(
        "Signing secret — shown once: receivers verify X-Console-Signature with it")
    secret = service.tenants.get_tenant_config("acme").custom_settings["webhookSecret"]
    expect(secret_box.locator("#webhook-secret-value")).to_have_text(secret)
    [subscription] = service.webhook_subscriptions("acme")
    expect(section.locator(f'tr[data-subscription="{subscription.id}"]')).to_contain_text(
        http_receiver.url)
    deliveries = page.locator("#webhook-deliveries")
    expect(deliveries).to_contain_text("No deliveries yet")
    expect(deliveries).to_have_attribute("data-live", "on")
    page.evaluate("window.notReloaded = true")   # gone if the page were loaded again

    job = service.queue_job("immediate", "noop", {}, "acme")
    row = deliveries.locator("tbody tr[data-delivery]")
    expect(row).to_have_count(1, timeout=20_000)
    expect(row.locator("[data-status]")).to_have_text("completed", timeout=20_000)
    expect(row).to_contain_text("job.completed")
    expect(row.locator(f'a[href="/jobs/{job.id}"]')).to_be_visible()
    assert len(http_receiver.requests) == 1
    assert page.evaluate("window.notReloaded") is True
    expect(secret_box).to_be_visible()            # still the answer to subscribing
    screenshot(page, "tenant-webhooks")

    # The secret was in that answer only: the tenant page, opened again, does not show it.
    page.goto("/tenants/acme")
    expect(page.locator("#webhook-deliveries tbody tr[data-delivery]")).to_have_count(1)
    expect(page.locator("#webhook-secret")).to_have_count(0)
    assert secret not in page.content()
    assert page_errors == []
