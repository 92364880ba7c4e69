// A customer's page: its budget and window as the API states them, spend over time from the
// ledger, and the latest ledger entries.

import { h, replace, errorBox } from "./dom.js";
import { spendChart } from "./chart.js";
import { count, money, percent, when } from "./format.js";
import { budgetText, resetText, statusBadges, toggleBlocked, usedCell } from "./customers.js";

const LATEST = 20;

// The chart is drawn at its box's pixel width; the page on screen redraws it on resize.
let redrawChart = null;
window.addEventListener("resize", () => redrawChart?.());

function limitsText(table) {
  if (!table) return "—";
  const parts = [];
  if (table.tpm_limit !== null) parts.push(`${count(table.tpm_limit)} tokens/min`);
  if (table.rpm_limit !== null) parts.push(`${count(table.rpm_limit)} requests/min`);
  if (table.max_parallel_requests !== null)
    parts.push(`${count(table.max_parallel_requests)} parallel`);
  return parts.length ? parts.join(" · ") : "none";
}

function facts(row) {
  const table = row.litellm_budget_table;
  const item = (term, value, testid) =>
    h("div", { class: "fact" }, h("dt", {}, term), h("dd", { "data-testid": testid }, value));
  return h(
    "dl",
    { class: "facts" },
    item("Spend this window", money(row.spend), "customer-spend"),
    item("Budget", budgetText(row)),
    item("Used", usedCell(row), "customer-used"),
    item("Soft budget", table ? money(table.soft_budget) : "—"),
    item("Window started", when(row.window_start_time)),
    item("Window resets", resetText(row)),
    item("Rate limits", limitsText(table)),
    item("Alias", row.alias ?? "—"),
  );
}

function ledgerTable(entries) {
  if (entries.length === 0) return h("p", { class: "empty" }, "No ledger entries yet.");
  const cols = ["Time", "Model", "Tokens in", "Tokens out", "Cost", "Spend after", "Request"];
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Latest ledger entries" },
    h(
      "table",
      { "data-testid": "ledger" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          cols.map((c) => h("th", { scope: "col" }, c)),
        ),
      ),
      h(
        "tbody",
        {},
        entries
          .slice(0, LATEST)
          .map((e) =>
            h(
              "tr",
              {},
              h("td", { class: "nowrap" }, when(e.startTime, { seconds: true })),
              h("td", { class: "nowrap" }, e.model),
              h("td", { class: "num" }, count(e.prompt_tokens)),
              h("td", { class: "num" }, count(e.completion_tokens)),
              h("td", { class: "num" }, money(e.spend)),
              h("td", { class: "num" }, money(e.spend_after)),
              h("td", { class: "mono" }, e.request_id),
            ),
          ),
      ),
    ),
    entries.length > LATEST
      ? h("p", { class: "note" }, `Latest ${LATEST} of ${entries.length} entries.`)
      : null,
  );
}

/** Render one customer's page into `view`. */
export async function showCustomer(view, ctx, userId) {
  const state = { unit: "hour", entries: [] };
  const head = h("div", { class: "view-head" }, h("h1", {}, userId));
  const body = h("div", { "aria-busy": "true" }, h("p", {}, "Loading…"));
  const chartBox = h("div", { "data-testid": "spend-chart" });
  const unitButton = (unit, text) =>
    h(
      "button",
      {
        type: "button",
        "data-unit": unit,
        "aria-pressed": String(unit === state.unit),
        onclick: () => setUnit(unit),
      },
      text,
    );
  const units = h(
    "div",
    { class: "segmented", role: "group", "aria-label": "Chart scale" },
    unitButton("hour", "Per hour"),
    unitButton("day", "Per day"),
  );

  let drawnWidth = 0;
  function drawChart(force) {
    const width = chartBox.clientWidth;
    if (!chartBox.isConnected || (!force && width === drawnWidth)) return;
    drawnWidth = width;
    // 18 px: the figure's padding and border.
    replace(chartBox, spendChart(state.entries, state.unit, width - 18));
  }
  redrawChart = () => drawChart(false);

  function setUnit(unit) {
    state.unit = unit;
    for (const b of units.querySelectorAll("button"))
      b.setAttribute("aria-pressed", String(b.dataset.unit === unit));
    drawChart(true);
  }

  async function load() {
    body.setAttribute("aria-busy", "true");
    try {
      const [row, entries] = await Promise.all([
        ctx.api.customerInfo(userId),
        ctx.api.spendLogs(userId),
      ]);
      state.entries = entries;
      replace(
        head,
        h("h1", {}, userId, " ", statusBadges(row)),
        h(
          "div",
          { class: "actions" },
          h(
            "button",
            { type: "button", onclick: () => toggleBlocked(ctx, row, load) },
            row.blocked ? "Unblock" : "Block",
          ),
          h("button", { type: "button", onclick: load }, "Refresh"),
        ),
      );
      replace(
        body,
        facts(row),
        h(
          "section",
          { "aria-labelledby": "chart-title" },
          h(
            "div",
            { class: "section-head" },
            h("h2", { id: "chart-title" }, "Spend over time"),
            units,
          ),
          chartBox,
        ),
        h(
          "section",
          { "aria-labelledby": "ledger-title" },
          h("h2", { id: "ledger-title" }, "Latest ledger entries"),
          ledgerTable(entries),
        ),
      );
      setUnit(state.unit);
    } catch (error) {
      if (!ctx.handleAuth(error)) replace(body, errorBox(error.message));
    } finally {
      body.setAttribute("aria-busy", "false");
    }
  }

  replace(
    view,
    h("p", { class: "crumbs" }, h("a", { href: "#/customers" }, "← Customers")),
    head,
    body,
  );
  await load();
}
