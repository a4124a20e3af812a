"use strict";
// Uploads the chosen export to POST /v1/imports and follows the job until it
// ends. Text from the server is only ever set as textContent.
const $ = (id) => document.getElementById(id);

function say(text) {
  $("import-status").textContent = text;
}

function showSummary(summary) {
  const list = $("import-summary");
  list.replaceChildren();
  const add = (term, value) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  };
  add("Records read", String(summary.records));
  add("Samples added", String(summary.added));
  add("Already stored", String(summary.unchanged));
  add("Replaced", String(summary.replaced));
  add("Sources", summary.sources.join(", "));
  const unknown = Object.entries(summary.unknown);
  if (unknown.length > 0) {
    add("Not imported (no such type in Hearth)", unknown.map(([k, n]) => k + " (" + n + ")").join(", "));
  }
  list.hidden = false;
}

async function follow(id) {
  const bar = $("import-progress");
  for (;;) {
    const r = await fetch("/v1/imports/" + encodeURIComponent(id));
    if (!r.ok) {
      say("The import's progress cannot be read.");
      return;
    }
    const job = await r.json();
    const p = job.progress;
    if (p.bytes_total > 0) {
      bar.max = p.bytes_total;
      bar.value = p.bytes_read;
    }
    const rate = p.elapsed_s > 0 ? Math.round(p.records / p.elapsed_s) : 0;
    if (job.state === "running") {
      say("Importing: " + p.records + " records read (" + rate + " a second), " + p.added + " samples added.");
      await new Promise((done) => setTimeout(done, 500));
      continue;
    }
    if (job.state === "succeeded") {
      bar.value = bar.max;
      say("Imported.");
      showSummary(job.summary);
    } else {
      say("The import failed: " + (job.error || job.state));
    }
    return;
  }
}

$("import").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("import-file").files[0];
  if (!file) {
    return;
  }
  const type = file.name.endsWith(".ndjson") ? "application/x-ndjson" : "application/zip";
  $("import-summary").hidden = true;
  $("import-progress").hidden = false;
  say("Uploading " + file.name + "…");
  const r = await fetch("/v1/imports", { method: "POST", headers: { "Content-Type": type }, body: file });
  if (!r.ok) {
    const problem = await r.json().catch(() => ({ detail: r.statusText }));
    say("The upload was refused: " + problem.detail);
    return;
  }
  const job = await r.json();
  await follow(job.id);
});
