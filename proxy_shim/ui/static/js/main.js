// Entry point: sign-in with the master key, the tabs, and the hash router.

import { createApi } from "./api.js";
import { showBudgets } from "./budgets.js";
import { showCustomer } from "./customer.js";
import { showCustomers } from "./customers.js";
import { replace } from "./dom.js";
import { forgetKey, storedKey, storeKey } from "./session.js";

const $ = (id) => document.getElementById(id);

const signIn = $("sign-in");
const signInForm = $("sign-in-form");
const signInError = $("sign-in-error");
const keyInput = $("master-key");
const app = $("app");
const view = $("view");
const notice = $("notice");

let ctx = null;

function showNotice(message) {
  replace(notice, message);
  notice.hidden = !message;
}

function signOut(message) {
  forgetKey();
  ctx = null;
  app.hidden = true;
  signIn.hidden = false;
  replace(signInError, message || "");
  signInError.hidden = !message;
  keyInput.value = "";
  keyInput.focus();
}

function contextFor(key) {
  const context = {
    api: createApi(key),
    /** A refused key ends the session; true when it did. */
    handleAuth(error) {
      if (!error.isAuth) return false;
      signOut(`Signed out: ${error.message}`);
      return true;
    },
    /** Show a failed action's reason above the view. */
    report(error) {
      if (!context.handleAuth(error)) showNotice(error.message);
    },
  };
  return context;
}

function route() {
  const hash = location.hash || "#/customers";
  const customer = hash.match(/^#\/customers\/(.+)$/);
  if (customer) return { tab: "customers", userId: decodeURIComponent(customer[1]) };
  if (hash === "#/budgets") return { tab: "budgets" };
  return { tab: "customers" };
}

async function render() {
  if (!ctx) return;
  showNotice("");
  const { tab, userId } = route();
  for (const link of document.querySelectorAll("#tabs a")) {
    if (link.dataset.tab === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${userId ?? (tab === "budgets" ? "Budgets" : "Customers")} · budgetd admin`;
  if (userId) await showCustomer(view, ctx, userId);
  else if (tab === "budgets") await showBudgets(view, ctx);
  else await showCustomers(view, ctx);
}

function enter(key) {
  ctx = contextFor(key);
  signIn.hidden = true;
  app.hidden = false;
  render();
}

signInForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  signInError.hidden = true;
  if (!key) {
    replace(signInError, "Enter the master key.");
    signInError.hidden = false;
    return;
  }
  const button = signInForm.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await createApi(key).listBudgets(); // proves the key is the master key
    storeKey(key);
    keyInput.value = "";
    enter(key);
  } catch (error) {
    replace(signInError, error.message);
    signInError.hidden = false;
    keyInput.select();
  } finally {
    button.disabled = false;
  }
});

$("sign-out").addEventListener("click", () => signOut(""));
window.addEventListener("hashchange", render);

const saved = storedKey();
if (saved) enter(saved);
else signOut("");
