// Modal forms on <dialog>: labelled fields, and the API's refusal shown in the API's words next
// to the field it names.

import { ApiError } from "./api.js";
import { h, replace } from "./dom.js";

let nextId = 0;

/** A labelled text input (or select) with a hint and a slot for its error message. */
export function field({ name, label, value = "", hint, required, readonly, inputmode, options }) {
  const id = `f-${name}-${++nextId}`;
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ");
  const control = options
    ? h(
        "select",
        { id, name, required, "aria-describedby": describedBy },
        options.map(([optionValue, text]) =>
          h("option", { value: optionValue, selected: optionValue === value }, text),
        ),
      )
    : h("input", {
        id,
        name,
        type: "text",
        value: value ?? "",
        required,
        readonly,
        inputmode,
        autocomplete: "off",
        spellcheck: "false",
        "aria-describedby": describedBy,
      });
  return h(
    "div",
    { class: "field" },
    h(
      "label",
      { for: id },
      label,
      required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null,
    ),
    control,
    hint ? h("small", { id: hintId, class: "hint" }, hint) : null,
    h("small", { id: errorId, class: "field-error", "data-error-for": name }),
  );
}

/** The form's text values by field name, trimmed; empty and disabled fields are left out. */
export function filledValues(form, names) {
  const out = {};
  for (const name of names) {
    const control = form.elements.namedItem(name);
    // :disabled also covers a control inside a disabled <fieldset>.
    const value = control && !control.matches(":disabled") ? control.value.trim() : "";
    if (value !== "") out[name] = value;
  }
  return out;
}

function clearErrors(form, banner) {
  banner.hidden = true;
  replace(banner);
  for (const slot of form.querySelectorAll("[data-error-for]")) replace(slot);
  for (const bad of form.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
}

function showError(form, banner, error) {
  const message = error instanceof ApiError ? error.message : String(error);
  banner.hidden = false;
  replace(banner, message);
  // The API names the field it refused ("max_budget", "model_max_budget.x.tpm_limit").
  const param = error instanceof ApiError && error.param ? error.param.split(/[.[]/)[0] : null;
  const control = param ? form.elements.namedItem(param) : null;
  if (control && control.setAttribute) {
    control.setAttribute("aria-invalid", "true");
    const slot = form.querySelector(`[data-error-for="${CSS.escape(param)}"]`);
    if (slot) replace(slot, message);
    control.focus();
  }
}

/**
 * Open a modal form. `submit(form)` calls the API; when it resolves the dialog closes and
 * `done(result)` runs; when it throws, the error stays on screen and the form stays open.
 */
export function formDialog({ title, submitLabel, body, submit, done, danger = false }) {
  const banner = h("p", { class: "error", role: "alert", hidden: true });
  const submitButton = h(
    "button",
    { type: "submit", class: danger ? "danger" : "primary" },
    submitLabel,
  );
  const cancel = h("button", { type: "button", onclick: () => dialog.close() }, "Cancel");
  const form = h(
    "form",
    { novalidate: true, method: "dialog" },
    h("h2", { id: `dlg-${++nextId}` }, title),
    banner,
    body,
    h("div", { class: "actions" }, cancel, submitButton),
  );
  const dialog = h("dialog", { "aria-labelledby": form.querySelector("h2").id }, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, banner);
    submitButton.disabled = true;
    try {
      const result = await submit(form);
      dialog.close();
      done?.(result);
    } catch (error) {
      showError(form, banner, error);
    } finally {
      submitButton.disabled = false;
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** Ask before a destructive action; a refusal (e.g. a tier still in use) is shown, not hidden. */
export function confirmDialog({ title, message, confirmLabel, action, done }) {
  return formDialog({
    title,
    submitLabel: confirmLabel,
    body: h("p", {}, message),
    submit: action,
    done,
    danger: true,
  });
}

let toastTimer = null;

/** A short, polite status message ("Budget my-free-tier created"). */
export function toast(message) {
  const box = document.getElementById("toast");
  replace(box, message);
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    box.hidden = true;
  }, 4000);
}
