// Spend over time from the ledger: each bar is the sum of the ledger costs in one hour or day
// (summed in integer nano-USD), drawn as inline SVG.

import { h, s } from "./dom.js";
import { fromNanos, money, moneyAxis, toNanos } from "./format.js";

export const SCALES = {
  hour: {
    buckets: 24,
    ticks: [1, 2, 3, 4, 6, 12],
    caption: "Spend per hour, last 24 hours (your local time)",
  },
  day: {
    buckets: 30,
    ticks: [1, 2, 3, 5, 7, 10, 15],
    caption: "Spend per day, last 30 days (your local time)",
  },
};

const hourLabel = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayLabel = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const fullLabel = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function startOf(date, unit) {
  const out = new Date(date);
  out.setMinutes(0, 0, 0);
  if (unit === "day") out.setHours(0);
  return out;
}

function shift(date, unit, steps) {
  const out = new Date(date);
  if (unit === "hour") out.setHours(out.getHours() + steps);
  else out.setDate(out.getDate() + steps);
  return out;
}

/** The ledger entries (from /spend/logs) summed per bucket, oldest bucket first. */
export function bucketize(entries, unit, now = new Date()) {
  const { buckets } = SCALES[unit];
  const first = shift(startOf(now, unit), unit, -(buckets - 1));
  const out = [];
  const byStart = new Map();
  for (let i = 0; i < buckets; i += 1) {
    const bucket = { start: shift(first, unit, i), nanos: 0, calls: 0 };
    out.push(bucket);
    byStart.set(bucket.start.getTime(), bucket);
  }
  for (const entry of entries) {
    const bucket = byStart.get(startOf(new Date(entry.startTime), unit).getTime());
    if (bucket) {
      bucket.nanos += toNanos(entry.spend);
      bucket.calls += 1;
    }
  }
  return out;
}

/** The smallest 1, 2, 2.5 or 5 x 10^k at or above `n` (an axis that reads well). */
function niceCeiling(n) {
  if (n <= 0) return 0;
  const power = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((v) => v >= n);
}

const H = 220;
const PAD = { left: 72, right: 8, top: 12, bottom: 28 };

/** A bar chart of the buckets, `width` CSS pixels wide (text stays at its CSS size). */
export function spendChart(entries, unit, width) {
  const W = Math.max(280, Math.floor(width));
  const { caption, ticks } = SCALES[unit];
  const buckets = bucketize(entries, unit);
  const top = niceCeiling(Math.max(0, ...buckets.map((b) => b.nanos)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / buckets.length;
  // A tick label needs ~70 px (a time or a date): label every n-th bucket, n a round step.
  const every = ticks.find((n) => n * slot >= 70) ?? ticks[ticks.length - 1];
  const y = (nanos) => PAD.top + plotH - (top ? (nanos / top) * plotH : 0);

  const grid = [0, 0.5, 1].map((f) => {
    const at = PAD.top + plotH - f * plotH;
    return s(
      "g",
      { class: "grid" },
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: at, y2: at }),
      s(
        "text",
        { x: PAD.left - 6, y: at + 4, "text-anchor": "end" },
        moneyAxis(fromNanos(top * f)),
      ),
    );
  });
  const label = unit === "hour" ? hourLabel : dayLabel;
  const bars = buckets.map((bucket, i) => {
    const x = PAD.left + i * slot;
    const calls = `${bucket.calls} call${bucket.calls === 1 ? "" : "s"}`;
    return s(
      "g",
      {},
      s(
        "rect",
        {
          class: "bar",
          x: x + slot * 0.15,
          y: y(bucket.nanos),
          width: slot * 0.7,
          height: PAD.top + plotH - y(bucket.nanos),
          "data-nanos": bucket.nanos,
        },
        s(
          "title",
          {},
          `${fullLabel.format(bucket.start)}: ${money(fromNanos(bucket.nanos))} (${calls})`,
        ),
      ),
      i % every === 0
        ? s(
            "text",
            { class: "tick", x: x + slot / 2, y: H - 8, "text-anchor": "middle" },
            label.format(bucket.start),
          )
        : null,
    );
  });
  const empty =
    top === 0
      ? s(
          "text",
          {
            class: "chart-empty",
            x: PAD.left + plotW / 2,
            y: PAD.top + plotH / 2,
            "text-anchor": "middle",
          },
          "No spend in this period",
        )
      : null;
  return h(
    "figure",
    { class: "chart" },
    s(
      "svg",
      {
        viewBox: `0 0 ${W} ${H}`,
        width: W,
        height: H,
        role: "img",
        "aria-label": caption,
        "data-unit": unit,
      },
      grid,
      bars,
      empty,
    ),
    h("figcaption", {}, caption),
  );
}
