"use strict";
// The idle lock, seen from an open page: a minute before Hearth locks
// itself, say so and offer to stay; once it has, clear the page, so a
// browser left open shows no data after the store stopped showing it.
(() => {
  const notice = document.getElementById("idle-lock");
  const banner = document.getElementById("idle-banner");
  const after = Number(notice && notice.dataset.afterMs);
  if (!banner || !(after > 0)) return;
  const warnAt = Math.max(after - 60000, after / 2);

  function say(text, action) {
    banner.replaceChildren(document.createTextNode(text + " "));
    if (action) banner.append(action);
    banner.hidden = false;
  }

  function warn() {
    const stay = document.createElement("button");
    stay.type = "button";
    stay.id = "stay-unlocked";
    stay.textContent = "Stay unlocked";
    // Any request of the owner's restarts the idle timer; the summary is
    // the cheapest page to ask for.
    stay.addEventListener("click", async () => {
      await fetch("/summary", { method: "HEAD", credentials: "same-origin" });
      banner.hidden = true;
      schedule();
    });
    say("Hearth locks itself soon without activity from you.", stay);
  }

  function locked() {
    const main = document.querySelector("main");
    const heading = document.createElement("h1");
    heading.textContent = "Hearth locked itself";
    const text = document.createElement("p");
    const link = document.createElement("a");
    link.href = "/";
    link.textContent = "Unlock it again";
    text.append("Nothing is readable until you unlock it. ", link);
    main.replaceChildren(heading, text);
    for (const form of document.querySelectorAll("header form, header nav")) form.remove();
    say("Hearth locked itself: you were away longer than it stays open.");
  }

  // Another page of the owner's may have kept the store open meanwhile:
  // ask until it has locked.
  async function check() {
    try {
      const r = await fetch("/readyz", { cache: "no-store" });
      const { state } = await r.json();
      if (state !== "unlocked") return locked();
    } catch (_) {
      // Hearth is not answering: try again later.
    }
    banner.hidden = true;
    setTimeout(check, Math.min(15000, Math.max(after / 4, 1000)));
  }

  let timers = [];
  function schedule() {
    timers.forEach(clearTimeout);
    timers = [setTimeout(warn, warnAt), setTimeout(check, after + 1000)];
  }
  schedule();
})();
