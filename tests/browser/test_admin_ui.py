"""The admin page in headless Chromium: sign-in, the Budgets and Customers tabs, a customer's
spend and chart after real chat calls through the shim, and a narrow window.

Every test also checks the browser console: no script error, and no failed request except the
refusals the test provokes on purpose.
"""

from __future__ import annotations

import os

import httpx
import pytest

from tests.browser.conftest import Browsing
from tests.e2e.conftest import CLIENT_KEY, unique

try:
    from playwright.sync_api import Page, ViewportSize, expect
except ImportError:  # pragma: no cover - CI installs the dev extras
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("playwright is not installed", allow_module_level=True)

pytestmark = pytest.mark.e2e

TIER = "my-free-tier"
NARROW: ViewportSize = {"width": 700, "height": 900}
DASH = "\N{EN DASH}"


def usd_text(amount: float) -> str:
    """USD as the page writes it: to the cent at least, to the nano-dollar at most."""
    text = f"{amount:,.9f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def chat(client: httpx.Client, user: str) -> None:
    """One chat call for ``user`` through the shim."""
    reply = client.post(
        "/chat/completions",
        json={
            "model": "azure-gpt-3.5",
            "user": user,
            "messages": [{"role": "user", "content": "what time is it"}],
        },
    )
    assert reply.status_code == 200, reply.text


def chart_nanos(page: Page) -> list[int]:
    """The chart's bars, as the nano-USD each one stands for."""
    bars = page.get_by_test_id("spend-chart").locator("rect.bar")
    return [int(n) for n in bars.evaluate_all("bars => bars.map(b => b.dataset.nanos)")]


def unlabelled_controls(page: Page) -> list[str]:
    """Inputs, selects and buttons a screen reader could not name."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('input, select, button')]
                .filter(e => e.offsetParent !== null)
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                             && !e.textContent.trim())
                .map(e => e.outerHTML)"""
        )
    )


def test_console_watch_catches_script_errors(browsing: Browsing) -> None:
    browsing.page.goto(f"{browsing.base_url}/ui/")
    browsing.page.evaluate("console.error('from the test')")
    browsing.page.evaluate("setTimeout(() => { throw new Error('thrown by the test') }, 0)")
    browsing.page.wait_for_timeout(100)
    with pytest.raises(AssertionError, match="thrown by the test"):
        browsing.assert_no_console_errors()
    assert "from the test" in browsing.errors


def test_usd_text_matches_the_page_format() -> None:
    assert usd_text(4) == "$4.00"
    assert usd_text(0) == "$0.00"
    assert usd_text(0.00012) == "$0.00012"
    assert usd_text(0.0001245) == "$0.0001245"
    assert usd_text(1234.5) == "$1,234.50"


def test_wrong_key_shows_an_error_not_a_table(browsing: Browsing) -> None:
    page = browsing.page
    browsing.sign_in("sk-not-the-key")
    error = page.locator("#sign-in-error")
    expect(error).to_have_text("Invalid proxy API key.")
    expect(page.get_by_role("table")).to_have_count(0)
    expect(page.get_by_role("navigation", name="Sections")).to_be_hidden()
    browsing.screenshot("sign-in-wrong-key")

    browsing.sign_in(CLIENT_KEY)  # a valid key, but not the master key
    expect(error).to_have_text("This route needs the master key.")
    expect(page.get_by_role("table")).to_have_count(0)
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0

    browsing.assert_no_console_errors(expected_statuses=frozenset({401, 403}))


def test_tier_customer_spend_and_chart(browsing: Browsing, client: httpx.Client) -> None:
    page = browsing.page
    browsing.sign_in()
    expect(page.get_by_role("heading", name="Customers", level=1)).to_be_visible()
    # The key is in this tab's session storage only.
    assert page.evaluate("Object.keys(sessionStorage)") == ["budgetd.masterKey"]
    assert page.evaluate("localStorage.length") == 0

    # Budgets tab: '+ Create Budget', the API's validation message, then my-free-tier at $4.
    page.get_by_role("link", name="Budgets").click()
    page.get_by_role("button", name="+ Create Budget").click()
    dialog = page.get_by_role("dialog", name="Create budget")
    assert unlabelled_controls(page) == []
    dialog.get_by_label("Budget id").fill(TIER)
    dialog.get_by_label("Max budget (USD)").fill("four dollars")
    dialog.get_by_role("button", name="Create budget").click()
    expect(dialog.get_by_role("alert").first).to_have_text(
        "max_budget: not a number: 'four dollars'"
    )
    expect(dialog.get_by_label("Max budget (USD)")).to_have_attribute("aria-invalid", "true")
    dialog.get_by_label("Max budget (USD)").fill("4")
    dialog.get_by_label("Budget duration").fill("30d")
    dialog.get_by_role("button", name="Create budget").click()
    expect(dialog).to_be_hidden()
    tier_row = page.locator(f'tr[data-budget="{TIER}"]')
    expect(tier_row.locator("td")).to_have_text(["$4.00", "—", "—", "—", "30d", "0", "EditDelete"])
    assert client.post("/budget/info", json={"budgets": [TIER]}).json()[0]["max_budget"] == 4.0

    # Customers tab: a customer on the tier.
    user = unique("ui-acme")
    page.get_by_role("link", name="Customers").click()
    page.get_by_role("button", name="+ Create Customer").click()
    dialog = page.get_by_role("dialog", name="Create customer")
    assert unlabelled_controls(page) == []
    dialog.get_by_label("Customer id").fill(user)
    dialog.get_by_label("Alias").fill("Acme Corp")
    dialog.get_by_label("On a pricing tier").check()
    dialog.get_by_label("Pricing tier", exact=True).select_option(TIER)
    dialog.get_by_role("button", name="Create customer").click()
    expect(dialog).to_be_hidden()
    page.get_by_label("Search customers").fill(user)
    row = page.locator(f'tr[data-customer="{user}"]')
    expect(row).to_contain_text("Acme Corp")
    expect(row).to_contain_text(f"{TIER} · $4.00")
    expect(row.locator("td.num").first).to_have_text("$0.00")
    info = client.get("/customer/info", params={"end_user_id": user}).json()
    assert info["litellm_budget_table"]["budget_id"] == TIER
    browsing.screenshot("customers-tab")

    # The customer's page before any call: nothing spent, an empty chart.
    row.get_by_role("link", name=user).click()
    spend = page.get_by_test_id("customer-spend")
    expect(spend).to_have_text("$0.00")
    expect(page.get_by_test_id("spend-chart")).to_contain_text("No spend in this period")
    assert sum(chart_nanos(page)) == 0

    # Chat calls for that customer through the shim; Refresh shows the spend and the chart.
    for _ in range(3):
        chat(client, user)
    info = client.get("/customer/info", params={"end_user_id": user}).json()
    assert info["spend"] > 0
    page.get_by_role("button", name="Refresh").click()
    expect(spend).to_have_text(usd_text(info["spend"]))
    assert unlabelled_controls(page) == []
    expect(page.get_by_test_id("customer-used")).to_have_text(
        f"{info['budget_used_percent']:.2f} %"
    )
    expect(page.get_by_test_id("ledger").locator("tbody tr")).to_have_count(3)
    ledger = client.get("/spend/logs", params={"end_user": user}).json()
    ledger_nanos = sum(round(entry["spend"] * 1e9) for entry in ledger)
    assert ledger_nanos == round(info["spend"] * 1e9)
    assert sum(chart_nanos(page)) == ledger_nanos
    assert len(chart_nanos(page)) == 24
    page.get_by_role("button", name="Per day").click()
    expect(page.get_by_role("button", name="Per day")).to_have_attribute("aria-pressed", "true")
    assert len(chart_nanos(page)) == 30
    assert sum(chart_nanos(page)) == ledger_nanos
    page.get_by_role("button", name="Per hour").click()
    browsing.screenshot("customer-page")

    # Block and unblock from the customer's page; the API agrees.
    heading = page.get_by_role("heading", level=1)
    page.get_by_role("button", name="Block", exact=True).click()
    expect(heading).to_contain_text("Blocked")
    assert client.get("/customer/info", params={"end_user_id": user}).json()["blocked"] is True
    page.get_by_role("button", name="Unblock", exact=True).click()
    expect(heading).to_contain_text("Active")
    assert client.get("/customer/info", params={"end_user_id": user}).json()["blocked"] is False

    # Deleting the tier is refused, with the reason, while the customer is on it.
    page.get_by_role("link", name="Budgets").click()
    expect(tier_row.locator("td").nth(5)).to_have_text("1")
    tier_row.get_by_role("button", name=f"Delete {TIER}").click()
    dialog = page.get_by_role("dialog", name=f"Delete budget {TIER}?")
    dialog.get_by_role("button", name="Delete budget").click()
    expect(dialog.get_by_role("alert")).to_have_text(
        f"budget '{TIER}' is used by 1 customer(s); move them to another tier first"
    )
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(tier_row).to_be_visible()

    # Edit: a soft budget of $1.50 on the tier.
    tier_row.get_by_role("button", name=f"Edit {TIER}").click()
    dialog = page.get_by_role("dialog", name=f"Edit budget {TIER}")
    expect(dialog.get_by_label("Max budget (USD)")).to_have_value("4")
    dialog.get_by_label("Soft budget (USD)").fill("1.5")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(tier_row.locator("td").nth(1)).to_have_text("$1.50")
    saved = client.post("/budget/info", json={"budgets": [TIER]}).json()[0]
    limits = (saved["max_budget"], saved["soft_budget"], saved["budget_duration"])
    assert limits == (4.0, 1.5, "30d")
    browsing.screenshot("budgets-tab")

    browsing.assert_no_console_errors(expected_statuses=frozenset({400, 422}))


def test_customer_with_own_budget_and_refusals(browsing: Browsing, client: httpx.Client) -> None:
    tier = unique("ui-other-tier")
    assert client.post("/budget/new", json={"budget_id": tier, "max_budget": 3}).status_code == 200
    taken = unique("ui-taken")
    assert client.post("/customer/new", json={"user_id": taken}).status_code == 200
    user = unique("ui-own")
    page = browsing.page
    browsing.sign_in()

    page.get_by_role("button", name="+ Create Customer").click()
    dialog = page.get_by_role("dialog", name="Create customer")
    dialog.get_by_label("Customer id").fill(taken)
    dialog.get_by_label("No budget").check()
    expect(dialog.get_by_label("Max budget (USD)")).to_be_hidden()
    dialog.get_by_role("button", name="Create customer").click()
    expect(dialog.get_by_role("alert").first).to_contain_text(taken)  # already exists

    # A tier chosen first, then Own budget: only the own budget's fields are sent.
    dialog.get_by_label("Customer id").fill(user)
    dialog.get_by_label("On a pricing tier").check()
    dialog.get_by_label("Pricing tier", exact=True).select_option(tier)
    dialog.get_by_label("Own budget").check()
    dialog.get_by_label("Max budget (USD)").fill("-5")
    dialog.get_by_role("button", name="Create customer").click()
    expect(dialog.get_by_role("alert").first).to_have_text("max_budget: must not be negative")
    dialog.get_by_label("Max budget (USD)").fill("10")
    dialog.get_by_label("Budget duration").fill("1d")
    dialog.get_by_role("button", name="Create customer").click()
    expect(dialog).to_be_hidden()

    page.get_by_label("Search customers").fill(user)
    row = page.locator(f'tr[data-customer="{user}"]')
    expect(row).to_contain_text("Own · $10.00")
    expect(row).to_contain_text("not started (1d)")
    info = client.get("/customer/info", params={"end_user_id": user}).json()
    assert info["litellm_budget_table"]["budget_id"] is None
    assert info["litellm_budget_table"]["max_budget"] == 10.0

    # Block and unblock from the table.
    row.get_by_role("button", name=f"Block {user}").click()
    expect(row).to_contain_text("Blocked")
    row.get_by_role("button", name=f"Unblock {user}").click()
    expect(row).to_contain_text("Active")
    assert client.get("/customer/info", params={"end_user_id": user}).json()["blocked"] is False
    browsing.assert_no_console_errors(expected_statuses=frozenset({400, 409, 422}))


def test_unused_tier_is_deleted(browsing: Browsing, client: httpx.Client) -> None:
    tier = unique("ui-unused")
    assert client.post("/budget/new", json={"budget_id": tier, "max_budget": 1}).status_code == 200
    page = browsing.page
    browsing.sign_in()
    page.get_by_role("link", name="Budgets").click()
    page.get_by_role("button", name=f"Delete {tier}").click()
    dialog = page.get_by_role("dialog", name=f"Delete budget {tier}?")
    expect(dialog).to_contain_text("No customer is on this tier.")
    dialog.get_by_role("button", name="Delete budget").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f'tr[data-budget="{tier}"]')).to_have_count(0)
    assert all(b["budget_id"] != tier for b in client.get("/budget/list").json())
    browsing.assert_no_console_errors()


def test_search_and_pages(browsing: Browsing, client: httpx.Client) -> None:
    prefix = unique("ui-page")
    for i in range(23):
        body = {"user_id": f"{prefix}-{i:02d}", "max_budget": 10}
        assert client.post("/customer/new", json=body).status_code == 200
    page = browsing.page
    browsing.sign_in()
    page.get_by_label("Search customers").fill(prefix)
    pager = page.get_by_role("navigation", name="Pages")
    expect(pager.get_by_role("status")).to_have_text(f"1{DASH}20 of 23")
    expect(page.locator("tbody tr")).to_have_count(20)
    expect(pager.get_by_role("button", name="Previous")).to_be_disabled()
    pager.get_by_role("button", name="Next").click()
    expect(pager.get_by_role("status")).to_have_text(f"21{DASH}23 of 23")
    expect(page.locator("tbody tr")).to_have_count(3)
    expect(pager.get_by_role("button", name="Next")).to_be_disabled()
    page.get_by_label("Search customers").fill(f"{prefix}-07")
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_label("Search customers").fill("no-such-customer-anywhere")
    expect(page.get_by_text("No customer matches the search.")).to_be_visible()
    browsing.assert_no_console_errors()


def test_narrow_window(browsing: Browsing, client: httpx.Client) -> None:
    user = unique("ui-narrow")
    body = {"user_id": user, "alias": "Narrow Ltd", "max_budget": 2, "budget_duration": "1d"}
    assert client.post("/customer/new", json=body).status_code == 200
    chat(client, user)
    page = browsing.page
    page.set_viewport_size(NARROW)
    browsing.sign_in()

    def fits() -> None:
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px"

    expect(page.get_by_role("heading", name="Customers", level=1)).to_be_visible()
    page.get_by_label("Search customers").fill(user)
    expect(page.locator(f'tr[data-customer="{user}"]')).to_be_visible()
    fits()
    for button in (
        page.get_by_role("button", name="+ Create Customer"),
        page.get_by_role("button", name=f"Block {user}"),
    ):
        box = button.bounding_box()
        assert box is not None and box["x"] + box["width"] <= NARROW["width"], box
    browsing.screenshot("narrow-customers-tab")

    page.get_by_role("link", name=user).click()
    expect(page.get_by_test_id("customer-spend")).not_to_have_text("$0.00")
    assert sum(chart_nanos(page)) > 0
    chart = page.get_by_test_id("spend-chart").locator("svg").bounding_box()
    assert chart is not None and chart["x"] + chart["width"] <= NARROW["width"]
    fits()
    browsing.screenshot("narrow-customer-page")

    page.get_by_role("link", name="Budgets").click()
    page.get_by_role("button", name="+ Create Budget").click()
    dialog = page.get_by_role("dialog", name="Create budget")
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"]
    fits()
    browsing.screenshot("narrow-budgets-create")
    dialog.get_by_role("button", name="Cancel").click()

    # Reload keeps the session (sessionStorage); Sign out forgets the key.
    page.reload()
    expect(page.get_by_role("heading", name="Budgets", level=1)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Master key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    browsing.assert_no_console_errors()
