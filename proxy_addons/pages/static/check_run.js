// The browser check: tries each case's URL from this browser and reports what it saw.
// The page can't read a cross-origin answer, so the gateway notes what it did with the
// request (armed probe) and judges the case; see proxy_addons/checks/page.py.
"use strict";
(function () {
  const table = document.getElementById("cases");
  const token = table.dataset.token;
  const base = "/checks/run/" + encodeURIComponent(token) + "/";
  const state = document.getElementById("state");

  async function post(what, body) {
    const answer = await fetch(base + what, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
      cache: "no-store",
    });
    let data = {};
    try { data = await answer.json(); } catch (e) { data = {error: "HTTP " + answer.status}; }
    return {ok: answer.ok, status: answer.status, data: data};
  }

  async function attempt(url, timeoutMs) {
    const stop = new AbortController();
    const timer = setTimeout(function () { stop.abort(); }, timeoutMs);
    try {
      await fetch(url, {
        mode: "no-cors", cache: "no-store", credentials: "omit",
        redirect: "follow", referrerPolicy: "no-referrer", signal: stop.signal,
      });
      return {saw: "response", detail: ""};
    } catch (e) {
      if (stop.signal.aborted) return {saw: "timeout", detail: "no answer in " + timeoutMs + " ms"};
      return {saw: "error", detail: String(e && e.message || e)};
    } finally {
      clearTimeout(timer);
    }
  }

  function show(row, outcome, evidence) {
    row.querySelector(".outcome").textContent = outcome;
    row.querySelector(".evidence").textContent = evidence;
    row.className = outcome;
  }

  async function run() {
    for (const row of table.querySelectorAll("tbody tr")) {
      const id = row.dataset.case;
      show(row, "trying", "");
      let armed = await post("arm", {case: id});
      for (let i = 0; armed.status === 409 && i < 20; i++) {  // another check on this host
        await new Promise(function (r) { setTimeout(r, 1000); });
        armed = await post("arm", {case: id});
      }
      if (!armed.ok) { show(row, "error", armed.data.error || "could not start"); continue; }
      const seen = await attempt(armed.data.url, armed.data.timeout_ms || 15000);
      const judged = await post("result", {case: id, saw: seen.saw, detail: seen.detail});
      if (judged.ok) show(row, judged.data.outcome, judged.data.evidence);
      else show(row, "error", judged.data.error || "not judged");
    }
    const done = await post("finish", {});
    if (done.ok) {
      const d = done.data;
      state.textContent = "Check recorded (run " + d.run_id + "): " + d.passed + " passed, " +
        d.failed + " failed, " + d.errors + " could not be judged.";
      document.body.dataset.runId = String(d.run_id);
    } else {
      state.textContent = "The check could not be recorded: " + (done.data.error || done.status);
      document.body.dataset.runId = "none";
    }
  }

  run().catch(function (e) { state.textContent = "The check stopped: " + e; });
})();
