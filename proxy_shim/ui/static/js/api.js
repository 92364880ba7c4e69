// The shim's JSON admin API, called exactly as curl calls it (Bearer master key).

/** A refusal from the API: its message, HTTP status and the field it names (if any). */
export class ApiError extends Error {
  constructor(message, status, param) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.param = param || null;
  }

  /** The key itself was refused (wrong key, or not the master key). */
  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

async function parseError(response) {
  let message = `${response.status} ${response.statusText}`;
  let param = null;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      param = body.error.param;
    }
  } catch {
    // Not JSON (a proxy in front of the shim, say): keep the status line.
  }
  return new ApiError(message, response.status, param);
}

/** An API client bound to one key; every method resolves to parsed JSON or throws ApiError. */
export function createApi(key) {
  async function call(method, path, body) {
    const init = { method, headers: { Authorization: `Bearer ${key}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(`The shim did not answer: ${error.message}`, 0, null);
    }
    if (!response.ok) throw await parseError(response);
    return response.json();
  }
  const q = encodeURIComponent;
  // Paths are relative to the page (served at <prefix>/ui/), so a path prefix keeps working.
  const root = "../";
  return {
    listBudgets: () => call("GET", `${root}budget/list`),
    newBudget: (fields) => call("POST", `${root}budget/new`, fields),
    updateBudget: (fields) => call("POST", `${root}budget/update`, fields),
    deleteBudget: (id) => call("POST", `${root}budget/delete`, { id }),
    listCustomers: () => call("GET", `${root}customer/list`),
    customerInfo: (id) => call("GET", `${root}customer/info?end_user_id=${q(id)}`),
    newCustomer: (fields) => call("POST", `${root}customer/new`, fields),
    block: (id) => call("POST", `${root}customer/block`, { user_ids: [id] }),
    unblock: (id) => call("POST", `${root}customer/unblock`, { user_ids: [id] }),
    spendLogs: (id) => call("GET", `${root}spend/logs?end_user=${q(id)}`),
  };
}
