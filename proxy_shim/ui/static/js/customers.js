// The Customers tab: a searchable, paginated table, '+ Create Customer', block/unblock.

import { h, replace, errorBox } from "./dom.js";
import { money, percent, when } from "./format.js";
import { field, filledValues, formDialog, toast } from "./forms.js";
import { LIMIT_FIELDS, limitFields } from "./limits.js";

export const PAGE_SIZE = 20;
const COLUMNS = ["Customer", "Alias", "Spend", "Budget", "Used", "Status", "Window resets", ""];

/** Link to a customer's page. */
export function customerHref(id) {
  return `#/customers/${encodeURIComponent(id)}`;
}

/** "my-free-tier · $4.00", "Own · $10.00" or "No budget", from the row's budget table. */
export function budgetText(row) {
  const table = row.litellm_budget_table;
  if (!table) return "No budget";
  const name = table.budget_id ?? "Own";
  return table.max_budget === null ? `${name} · no max` : `${name} · ${money(table.max_budget)}`;
}

/** The API's percentage with a meter (no meter without a max budget). */
export function usedCell(row) {
  const pct = row.budget_used_percent;
  if (pct === null || pct === undefined) return "—";
  return h(
    "span",
    { class: "used" },
    h("meter", {
      min: 0,
      max: 100,
      low: 80,
      high: 99.99,
      optimum: 0,
      value: Math.min(pct, 100),
      "aria-hidden": "true",
    }),
    " ",
    percent(pct),
  );
}

/** Status badges: blocked, over the soft budget, or active. */
export function statusBadges(row) {
  const out = [];
  if (row.blocked) out.push(h("span", { class: "badge bad" }, "Blocked"));
  if (row.soft_budget_exceeded) out.push(h("span", { class: "badge warn" }, "Over soft budget"));
  if (out.length === 0) out.push(h("span", { class: "badge ok" }, "Active"));
  return out;
}

/** When the window ends, "not started" before the first call, "never" when it never resets. */
export function resetText(row) {
  const table = row.litellm_budget_table;
  if (!table) return "—";
  if (row.window_end_time) return when(row.window_end_time);
  // No window yet: it begins with the customer's next call.
  return table.budget_duration ? `not started (${table.budget_duration})` : "never";
}

/** Block or unblock, then run `done`; a refusal is reported by `ctx`. */
export async function toggleBlocked(ctx, row, done) {
  try {
    if (row.blocked) await ctx.api.unblock(row.user_id);
    else await ctx.api.block(row.user_id);
    toast(`${row.user_id} ${row.blocked ? "unblocked" : "blocked"}`);
    await done();
  } catch (error) {
    ctx.report(error);
  }
}

function blockButton(ctx, row, done) {
  const verb = row.blocked ? "Unblock" : "Block";
  return h(
    "button",
    {
      type: "button",
      "aria-label": `${verb} ${row.user_id}`,
      onclick: () => toggleBlocked(ctx, row, done),
    },
    verb,
  );
}

function customerRow(ctx, row, done) {
  return h(
    "tr",
    { "data-customer": row.user_id },
    h("th", { scope: "row" }, h("a", { href: customerHref(row.user_id) }, row.user_id)),
    h("td", {}, row.alias ?? "—"),
    h("td", { class: "num" }, money(row.spend)),
    h("td", { class: "nowrap" }, budgetText(row)),
    h("td", { class: "num" }, usedCell(row)),
    h("td", {}, statusBadges(row)),
    h("td", {}, resetText(row)),
    h("td", { class: "row-actions" }, blockButton(ctx, row, done)),
  );
}

async function createCustomer(ctx, done) {
  let tiers = [];
  try {
    tiers = await ctx.api.listBudgets();
  } catch (error) {
    ctx.report(error);
    return;
  }
  const radio = (value, text, checked, disabled) =>
    h(
      "label",
      { class: "choice" },
      h("input", { type: "radio", name: "plan", value, checked, disabled }),
      " ",
      text,
    );
  const tierSelect = field({
    name: "budget_id",
    label: "Pricing tier",
    options: tiers.map((t) => [t.budget_id, `${t.budget_id} (${money(t.max_budget)})`]),
    hint: tiers.length ? null : "No pricing tier exists yet: create one on the Budgets tab.",
  });
  const tierSet = h("fieldset", { class: "sub" }, h("legend", {}, "Tier"), tierSelect);
  const ownSet = h("fieldset", { class: "sub" }, h("legend", {}, "Own budget"), limitFields());
  const plans = h(
    "fieldset",
    {},
    h("legend", {}, "Budget"),
    radio("tier", "On a pricing tier", tiers.length > 0, tiers.length === 0),
    radio("own", "Own budget", tiers.length === 0, false),
    radio("none", "No budget (spend is tracked, never refused)", false, false),
  );
  const sync = () => {
    const plan = plans.querySelector("input:checked").value;
    tierSet.disabled = plan !== "tier";
    tierSet.hidden = plan !== "tier";
    ownSet.disabled = plan !== "own";
    ownSet.hidden = plan !== "own";
  };
  plans.addEventListener("change", sync);
  sync();
  formDialog({
    title: "Create customer",
    submitLabel: "Create customer",
    body: [
      field({
        name: "user_id",
        label: "Customer id",
        required: true,
        hint: 'The "user" your application sends with each call.',
      }),
      field({ name: "alias", label: "Alias" }),
      plans,
      tierSet,
      ownSet,
    ],
    submit: (form) =>
      ctx.api.newCustomer(filledValues(form, ["user_id", "alias", "budget_id", ...LIMIT_FIELDS])),
    done: (row) => {
      toast(`Customer ${row.user_id} created`);
      done();
    },
  });
}

function matches(row, query) {
  if (!query) return true;
  const q = query.toLowerCase();
  return row.user_id.toLowerCase().includes(q) || (row.alias ?? "").toLowerCase().includes(q);
}

/** Render the Customers tab into `view`. */
export async function showCustomers(view, ctx) {
  const state = { rows: [], query: "", page: 0 };
  const body = h("div", { "aria-busy": "true" }, h("p", {}, "Loading…"));
  const search = h("input", {
    id: "customer-search",
    type: "search",
    autocomplete: "off",
    placeholder: "id or alias",
  });

  const draw = () => {
    const found = state.rows.filter((row) => matches(row, state.query));
    const pages = Math.max(1, Math.ceil(found.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const first = state.page * PAGE_SIZE;
    const shown = found.slice(first, first + PAGE_SIZE);
    if (found.length === 0) {
      replace(
        body,
        h(
          "p",
          { class: "empty" },
          state.rows.length ? "No customer matches the search." : "No customers yet.",
        ),
      );
      return;
    }
    const go = (delta) => () => {
      state.page += delta;
      draw();
    };
    replace(
      body,
      h(
        "div",
        { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Customers" },
        h(
          "table",
          {},
          h("caption", { class: "visually-hidden" }, "Customers"),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              COLUMNS.map((name) => h("th", { scope: "col" }, name)),
            ),
          ),
          h(
            "tbody",
            {},
            shown.map((row) => customerRow(ctx, row, load)),
          ),
        ),
      ),
      h(
        "nav",
        { class: "pager", "aria-label": "Pages" },
        h("button", { type: "button", disabled: state.page === 0, onclick: go(-1) }, "Previous"),
        h("span", { role: "status" }, `${first + 1}–${first + shown.length} of ${found.length}`),
        h("button", { type: "button", disabled: state.page >= pages - 1, onclick: go(1) }, "Next"),
      ),
    );
  };

  async function load() {
    body.setAttribute("aria-busy", "true");
    try {
      state.rows = await ctx.api.listCustomers();
      draw();
    } catch (error) {
      if (!ctx.handleAuth(error)) replace(body, errorBox(error.message));
    } finally {
      body.setAttribute("aria-busy", "false");
    }
  }

  search.addEventListener("input", () => {
    state.query = search.value.trim();
    state.page = 0;
    draw();
  });
  replace(
    view,
    h(
      "div",
      { class: "view-head" },
      h("h1", {}, "Customers"),
      h(
        "button",
        { type: "button", class: "primary", onclick: () => createCustomer(ctx, load) },
        "+ Create Customer",
      ),
    ),
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "customer-search" }, "Search customers"),
      search,
      h("button", { type: "button", onclick: load }, "Refresh"),
    ),
    body,
  );
  await load();
}
