// Presenting what the API states: money, percentages, counts and times. No arithmetic on money
// beyond summing ledger costs (in integer nano-USD) for the chart.

const usd = new Intl.NumberFormat("en-US", {
  style: "currency",
  currency: "USD",
  minimumFractionDigits: 2,
  maximumFractionDigits: 9, // the API's amounts are whole nano-dollars: shown exactly
});
const usdAxis = new Intl.NumberFormat("en-US", {
  style: "currency",
  currency: "USD",
  maximumSignificantDigits: 3,
});
const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateTimeSeconds = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});

/** USD exactly as the API states it, at least to the cent: $4.00, $0.0001245. */
export function money(value) {
  return value === null || value === undefined ? "—" : usd.format(value);
}

/** USD to three significant digits, for chart axes: $0.0012, $4.5, $1,230. */
export function moneyAxis(value) {
  return usdAxis.format(value);
}

/** A count, or "—" when the limit is not set. */
export function count(value) {
  return value === null || value === undefined ? "—" : integer.format(value);
}

/** The API's percentage as text. */
export function percent(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(2)} %`;
}

/** An ISO timestamp in the viewer's time zone. */
export function when(iso, { seconds = false } = {}) {
  if (!iso) return "—";
  return (seconds ? dateTimeSeconds : dateTime).format(new Date(iso));
}

/** USD as integer nano-USD, so sums of ledger costs are exact. */
export function toNanos(value) {
  return Math.round(value * 1e9);
}

/** Integer nano-USD back to USD. */
export function fromNanos(nanos) {
  return nanos / 1e9;
}
