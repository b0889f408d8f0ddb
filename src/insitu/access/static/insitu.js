// Adds a "Copy" button to each code snippet, runs a published workflow from its page
// (POST to the API, then follow the job), and shows quicklooks computed on the server
// once they are ready. The pages work without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  if (!navigator.clipboard) return;
  for (const box of document.querySelectorAll("div.snippet")) {
    const pre = box.querySelector("pre");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy " + (box.previousElementSibling?.textContent || "code"));
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(pre.innerText);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Copy failed: select the text";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
    box.append(button);
  }
});

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("run-form");
  if (!form) return;
  const status = document.getElementById("run-status");
  const button = form.querySelector("button[type=submit]");
  const say = (text) => { status.textContent = text; };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = {};
    for (const input of form.querySelectorAll("input[name]")) {
      if (input.value === input.dataset.default) continue;
      try {
        params[input.name] = JSON.parse(input.value);
      } catch {
        say(`${input.name}: ${JSON.stringify(input.value)} is not JSON (text needs "quotes").`);
        input.focus();
        return;
      }
    }
    button.disabled = true;
    say("Submitting…");
    try {
      let r = await fetch(form.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify({ params }),
      });
      let job = await r.json();
      if (!r.ok) throw new Error((job.error && job.error.message) || JSON.stringify(job));
      while (job.status === "queued" || job.status === "running") {
        say(`Job ${job.id}: ${job.status}…`);
        await new Promise((done) => setTimeout(done, 1000));
        r = await fetch(job.links.self, { credentials: "same-origin" });
        job = await r.json();
        if (!r.ok) throw new Error((job.error && job.error.message) || JSON.stringify(job));
      }
      const run = job.provenance && job.provenance.run_id;
      if (run) {
        window.location.assign(`${form.dataset.page}?run=${encodeURIComponent(run)}`);
        return;
      }
      say(`Job ${job.id}: ${job.status}${job.error ? ": " + job.error.message : ""}`);
    } catch (error) {
      say(`The run could not be started: ${error.message}`);
    }
    button.disabled = false;
  });
});

// A quicklook computed on the server (a field mean too large to read for one page): the
// placeholder says so, and is replaced by the plot once the server answers with it (202
// until then). An error is shown as text, never as a broken image.
function waitForPlot(box) {
  const url = box.dataset.src;
  const status = box.querySelector(".status");
  const started = Date.now();
  const show = (text) => { status.textContent = text; };
  const poll = async () => {
    let answer;
    try {
      answer = await fetch(url, { cache: "no-store" });
    } catch {
      show("The data service cannot be reached; reload the page to try again.");
      return;
    }
    if (answer.ok && answer.status === 200) {
      const img = new Image(Number(box.dataset.width), Number(box.dataset.height));
      img.id = box.dataset.id;
      img.alt = box.dataset.alt;
      img.addEventListener("load", () => box.replaceWith(img), { once: true });
      img.addEventListener("error", () => show("The plot could not be shown; reload the page."), { once: true });
      img.src = url; // the service keeps the PNG it just made: this answer is immediate
      return;
    }
    let body = null;
    try { body = await answer.json(); } catch { body = null; }
    if (answer.status === 202) {
      const seconds = Math.round((Date.now() - started) / 1000);
      const state = body?.status === "queued" ? "waiting for a free worker" : "running";
      show(`Computing the field mean on the server: ${state}, ${seconds} s so far. The plot appears here when it is ready.`);
      const wait = Number(answer.headers.get("Retry-After")) || 1;
      setTimeout(poll, wait * 1000);
      return;
    }
    show(body?.error?.message || `The plot could not be made (HTTP ${answer.status}); reload the page to try again.`);
  };
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("div.pending[data-src]")) waitForPlot(box);
});
