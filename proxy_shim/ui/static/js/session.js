// The master key lives in this tab's session storage only: gone when the tab closes.

const KEY = "budgetd.masterKey";

export function storedKey() {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}
