// The budget fields a tier or a customer's own budget carries, as form fields. Values go to the
// API as typed (strings): the API parses and validates them and says what is wrong.

import { field } from "./forms.js";

export const LIMIT_FIELDS = [
  "max_budget",
  "soft_budget",
  "budget_duration",
  "tpm_limit",
  "rpm_limit",
  "max_parallel_requests",
];

/** Form fields for the limits, prefilled from an API row (a tier or a budget table). */
export function limitFields(row = {}) {
  const text = (value) => (value === null || value === undefined ? "" : String(value));
  return [
    field({
      name: "max_budget",
      label: "Max budget (USD)",
      value: text(row.max_budget),
      inputmode: "decimal",
      hint: "Calls are refused once spend in the window reaches it.",
    }),
    field({
      name: "soft_budget",
      label: "Soft budget (USD)",
      value: text(row.soft_budget),
      inputmode: "decimal",
      hint: "Crossing it raises an alert; calls still pass.",
    }),
    field({
      name: "budget_duration",
      label: "Budget duration",
      value: text(row.budget_duration),
      hint: "When spend starts again from zero: 30s, 30m, 1h, 1d, 7d, 1mo. Empty: never.",
    }),
    field({
      name: "tpm_limit",
      label: "Tokens per minute",
      value: text(row.tpm_limit),
      inputmode: "numeric",
    }),
    field({
      name: "rpm_limit",
      label: "Requests per minute",
      value: text(row.rpm_limit),
      inputmode: "numeric",
    }),
    field({
      name: "max_parallel_requests",
      label: "Parallel requests",
      value: text(row.max_parallel_requests),
      inputmode: "numeric",
    }),
  ];
}

/** Every limit field, an empty one as null: an update then sets the tier to what the form shows. */
export function allLimits(form) {
  const out = {};
  for (const name of LIMIT_FIELDS) {
    const value = form.elements.namedItem(name).value.trim();
    out[name] = value === "" ? null : value;
  }
  return out;
}
