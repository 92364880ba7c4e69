#!/usr/bin/env node
// A budgetd client in Node.js, built only from the published contract in ../../protos.
//
// It creates a customer with a 1,000,000 nano-USD budget, authorizes one gpt-4o-mini call,
// settles it with RecordSpend, reads the customer back, and prints one JSON line:
//   {"customer": ..., "authorize": ..., "record_spend": ..., "spend_nanos": "..."}
//
// Run it:
//   npm ci
//   BUDGETD_ADMIN_TOKEN=secret budgetd serve          # in another terminal
//   BUDGETD_ADMIN_TOKEN=secret node client.js [user_id]
//
// Environment:
//   BUDGETD_ADDR          host:port of budgetd (default 127.0.0.1:50051)
//   BUDGETD_ADMIN_TOKEN   admin token, sent as `authorization: Bearer <token>` to CustomerService
//
// int64 fields are strings both ways (longs: String), so nano-USD amounts never lose precision.
// On an RPC error it prints the status code and details to stderr and exits 1.
"use strict";

const crypto = require("node:crypto");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTOS = path.resolve(__dirname, "..", "..", "protos");
const ADDR = process.env.BUDGETD_ADDR || "127.0.0.1:50051";
const TOKEN = process.env.BUDGETD_ADMIN_TOKEN || "";
const DEADLINE_MS = 10_000;

const definition = protoLoader.loadSync(
  ["budgetd/v1/customer_service.proto", "budgetd/v1/spend_service.proto"],
  { includeDirs: [PROTOS], keepCase: true, longs: String, defaults: true, oneofs: true },
);
const v1 = grpc.loadPackageDefinition(definition).budgetd.v1;

// One unary call as a promise, with a deadline.
function call(client, method, request, metadata = new grpc.Metadata()) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + DEADLINE_MS);
    client[method](request, metadata, { deadline }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

async function main() {
  const userId = process.argv[2] || `node-${crypto.randomUUID()}`;
  const requestId = crypto.randomUUID();
  const admin = new grpc.Metadata();
  if (TOKEN) admin.set("authorization", `Bearer ${TOKEN}`);

  const credentials = grpc.credentials.createInsecure();
  const customers = new v1.CustomerService(ADDR, credentials);
  const spend = new v1.SpendService(ADDR, credentials);
  try {
    await call(
      customers,
      "CreateCustomer",
      { customer: { user_id: userId, limits: { max_budget_nanos: "1000000" } } },
      admin,
    );
    const authorize = await call(spend, "Authorize", {
      customer_id: userId,
      model: "gpt-4o-mini",
      input_tokens: "100",
      max_output_tokens: "100",
      request_id: requestId,
    });
    if (!authorize.allowed) throw new Error(`call denied: ${authorize.message}`);
    const recordSpend = await call(spend, "RecordSpend", {
      request_id: requestId,
      customer_id: userId,
      reservation_id: authorize.reservation_id,
      model: "gpt-4o-mini",
      usage: { input_tokens: "100", output_tokens: "50" },
    });
    const { customer } = await call(customers, "GetCustomer", { user_id: userId }, admin);
    console.log(
      JSON.stringify({
        customer,
        authorize,
        record_spend: recordSpend,
        spend_nanos: customer.spend_nanos,
      }),
    );
  } finally {
    customers.close();
    spend.close();
  }
}

main().catch((err) => {
  if (err.code !== undefined) {
    const name = Object.keys(grpc.status).find((key) => grpc.status[key] === err.code);
    console.error(`RPC failed: code=${err.code} (${name}) details=${err.details}`);
  } else {
    console.error(`error: ${err.message}`);
  }
  process.exit(1);
});
