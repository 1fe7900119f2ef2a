// The alert list's live feed: every few seconds, asks /alerts/feed for alerts newer than the
// newest one shown (under the page's own filters) and puts them at the top of the table,
// each row as the server rendered it, and puts in place the rows shown that changed since
// (a repeat counted, acknowledged or closed by someone else). A screen reader hears of them through the polite
// live region. Without this script the page works the same, only without new rows.
// See proxy_addons/web/alert_pages.py.
"use strict";
(function () {
  const table = document.getElementById("alerts");
  if (!table || !table.dataset.feed) { return; }
  const body = table.tBodies[0];
  const status = document.getElementById("feed-status");
  const caption = table.caption;
  const every = parseInt(table.dataset.every, 10) || 4000;
  const title = document.title;
  let last = parseInt(table.dataset.last, 10) || 0;
  let since = table.dataset.since || "";
  let arrived = 0;
  let timer = null;
  let asking = false; // one question at a time, however slow the answer

  function address() {
    const url = new URL(table.dataset.feed, window.location.href);
    url.searchParams.set("after", String(last));
    url.searchParams.set("since", since);
    return url.toString();
  }

  function stop(text) {
    if (timer !== null) { clearInterval(timer); timer = null; }
    if (status) { status.textContent = text; }
  }

  function show(rows, announce) {
    const empty = document.getElementById("no-alerts");
    if (empty) { empty.remove(); }
    // Newest first from the server: put the oldest in first, so the newest ends on top.
    for (let i = rows.length - 1; i >= 0; i--) {
      if (document.getElementById("alert-" + rows[i].id)) { continue; }
      body.insertAdjacentHTML("afterbegin", rows[i].html);
      const row = body.firstElementChild;
      if (row) { row.classList.add("fresh"); }
    }
    arrived += rows.length;
    document.title = "(" + arrived + " new) " + title;
    if (caption) {
      const shown = body.querySelectorAll("tr[id^='alert-']").length;
      caption.textContent = shown + " alerts shown, newest first (times are school time); " +
        arrived + " arrived while this page was open";
    }
    if (status) { status.textContent = announce; }
  }

  // Rows already shown that changed (repeated, acknowledged, closed by someone else).
  function update(rows) {
    for (const changed of rows) {
      const old = document.getElementById("alert-" + changed.id);
      if (!old) { continue; }
      const fresh = old.classList.contains("fresh");
      old.insertAdjacentHTML("afterend", changed.html);
      const row = old.nextElementSibling;
      old.remove();
      if (row && fresh) { row.classList.add("fresh"); }
    }
  }

  async function poll() {
    if (asking) { return; }
    asking = true;
    try { await ask(); } finally { asking = false; }
  }

  async function ask() {
    let answer;
    try {
      answer = await fetch(address(), {
        headers: {"Accept": "application/json"},
        cache: "no-store",
        credentials: "same-origin",
        redirect: "manual",
      });
    } catch (e) {
      return; // the network hiccuped: try again next time
    }
    if (answer.type === "opaqueredirect" || answer.status === 401 || answer.status === 403) {
      stop("Live updates stopped: sign in again and reload the page.");
      return;
    }
    if (!answer.ok) { return; }
    let data;
    try { data = await answer.json(); } catch (e) { return; }
    if (typeof data.since === "string") { since = data.since; }
    if (Array.isArray(data.changed)) { update(data.changed); }
    if (typeof data.last === "number" && data.last > last) { last = data.last; }
    if (Array.isArray(data.rows) && data.rows.length) { show(data.rows, data.announce || ""); }
  }

  timer = setInterval(poll, every);
})();
