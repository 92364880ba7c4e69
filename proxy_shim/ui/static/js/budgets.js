// The Budgets tab: pricing tiers, '+ Create Budget', edit and delete.

import { h, replace, errorBox } from "./dom.js";
import { count, money } from "./format.js";
import { confirmDialog, field, filledValues, formDialog, toast } from "./forms.js";
import { LIMIT_FIELDS, allLimits, limitFields } from "./limits.js";

const COLUMNS = ["Budget", "Max budget", "Soft budget", "TPM", "RPM", "Duration", "Customers", ""];

function createBudget(ctx, refresh) {
  formDialog({
    title: "Create budget",
    submitLabel: "Create budget",
    body: [
      field({
        name: "budget_id",
        label: "Budget id",
        required: true,
        hint: "The name customers are assigned by, e.g. my-free-tier.",
      }),
      h("p", { class: "note" }, "Each customer on this tier gets these limits separately."),
      limitFields(),
    ],
    submit: (form) => ctx.api.newBudget(filledValues(form, ["budget_id", ...LIMIT_FIELDS])),
    done: (budget) => {
      toast(`Budget ${budget.budget_id} created`);
      refresh();
    },
  });
}

function editBudget(ctx, budget, refresh) {
  formDialog({
    title: `Edit budget ${budget.budget_id}`,
    submitLabel: "Save",
    body: [
      field({ name: "budget_id", label: "Budget id", value: budget.budget_id, readonly: true }),
      limitFields(budget),
    ],
    submit: (form) => ctx.api.updateBudget({ budget_id: budget.budget_id, ...allLimits(form) }),
    done: (saved) => {
      toast(`Budget ${saved.budget_id} saved`);
      refresh();
    },
  });
}

function deleteBudget(ctx, budget, refresh) {
  confirmDialog({
    title: `Delete budget ${budget.budget_id}?`,
    message:
      budget.customer_count > 0
        ? `${budget.customer_count} customer(s) are on this tier.`
        : "No customer is on this tier.",
    confirmLabel: "Delete budget",
    action: () => ctx.api.deleteBudget(budget.budget_id),
    done: () => {
      toast(`Budget ${budget.budget_id} deleted`);
      refresh();
    },
  });
}

function budgetRow(ctx, budget, refresh) {
  const id = budget.budget_id;
  return h(
    "tr",
    { "data-budget": id },
    h("th", { scope: "row" }, id),
    h("td", { class: "num" }, money(budget.max_budget)),
    h("td", { class: "num" }, money(budget.soft_budget)),
    h("td", { class: "num" }, count(budget.tpm_limit)),
    h("td", { class: "num" }, count(budget.rpm_limit)),
    h("td", {}, budget.budget_duration ?? "never resets"),
    h("td", { class: "num" }, count(budget.customer_count)),
    h(
      "td",
      { class: "row-actions" },
      h(
        "button",
        {
          type: "button",
          "aria-label": `Edit ${id}`,
          onclick: () => editBudget(ctx, budget, refresh),
        },
        "Edit",
      ),
      h(
        "button",
        {
          type: "button",
          class: "danger-text",
          "aria-label": `Delete ${id}`,
          onclick: () => deleteBudget(ctx, budget, refresh),
        },
        "Delete",
      ),
    ),
  );
}

function table(ctx, budgets, refresh) {
  if (budgets.length === 0) {
    return h(
      "p",
      { class: "empty" },
      "No budgets yet. Create a pricing tier with + Create Budget.",
    );
  }
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Budgets" },
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, "Pricing tiers"),
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
        budgets.map((budget) => budgetRow(ctx, budget, refresh)),
      ),
    ),
  );
}

/** Render the Budgets tab into `view`. */
export async function showBudgets(view, ctx) {
  const body = h("div", { "aria-live": "polite", "aria-busy": "true" }, h("p", {}, "Loading…"));
  const refresh = async () => {
    body.setAttribute("aria-busy", "true");
    try {
      replace(body, table(ctx, await ctx.api.listBudgets(), refresh));
    } catch (error) {
      if (!ctx.handleAuth(error)) replace(body, errorBox(error.message));
    } finally {
      body.setAttribute("aria-busy", "false");
    }
  };
  replace(
    view,
    h(
      "div",
      { class: "view-head" },
      h("h1", {}, "Budgets"),
      h(
        "button",
        { type: "button", class: "primary", onclick: () => createBudget(ctx, refresh) },
        "+ Create Budget",
      ),
    ),
    h(
      "p",
      { class: "lede" },
      "Pricing tiers: every customer on a tier gets its limits separately.",
    ),
    body,
  );
  await refresh();
}
