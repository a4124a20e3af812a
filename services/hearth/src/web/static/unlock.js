"use strict";
const $ = (id) => document.getElementById(id);

async function refresh() {
  const r = await fetch("/readyz");
  const { state } = await r.json();
  $("state").textContent = "The store is " + state + ".";
  $("unlock").hidden = !(state === "sealed" || state === "locked");
  $("setup").hidden = state !== "uninitialised";
  $("open").hidden = state !== "unlocked";
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (r.ok) {
    const session = await r.json();
    // Setup answers the recovery key, this once.
    $("message").textContent = session.recovery_key
      ? "Unlocked. Your recovery key (shown this once; write it down and keep it apart " +
        "from the passphrase, it opens the store if the passphrase is lost): " +
        session.recovery_key
      : "Unlocked.";
  } else {
    const problem = await r.json();
    $("message").textContent = problem.detail;
  }
  await refresh();
}

$("unlock").addEventListener("submit", (e) => {
  e.preventDefault();
  post("/v1/unlock", { passphrase: $("passphrase").value });
  $("passphrase").value = "";
});
$("setup").addEventListener("submit", (e) => {
  e.preventDefault();
  post("/v1/setup", { setup_code: $("setup_code").value.trim(), passphrase: $("new_passphrase").value });
  $("new_passphrase").value = "";
});
refresh();
