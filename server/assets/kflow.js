// kflow serve: small progressive additions to server-rendered pages. Every
// page works without this script; with it, times show in the viewer's zone,
// digests copy with a click, and the live parts (states, logs) update.
"use strict";

// Times: shown in the viewer's zone, the UTC instant on hover. One
// formatter for all (making one per time costs more than the page).
const localFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (isNaN(d)) continue;
    t.title = d.toISOString();
    t.textContent = localFormat.format(d);
  }
}

// Copy buttons beside digests.
function copyButtons(root) {
  for (const el of root.querySelectorAll("[data-copy]")) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "copy";
    b.textContent = "copy";
    b.setAttribute("aria-label", "copy " + el.dataset.copy);
    b.addEventListener("click", () => {
      navigator.clipboard.writeText(el.dataset.copy).then(() => { b.textContent = "copied"; });
    });
    el.after(b);
  }
}

// Deadlines counted down.
function countdowns() {
  const els = document.querySelectorAll("[data-deadline]");
  if (!els.length) return;
  const tick = () => {
    for (const el of els) {
      const left = Math.max(0, Math.round((new Date(el.dataset.deadline) - Date.now()) / 1000));
      const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = left === 0 ? "expired" : (h ? h + "h " : "") + m + "m " + s + "s left";
    }
  };
  tick();
  setInterval(tick, 1000);
}

function setState(el, state) {
  for (const c of [...el.classList]) if (c.startsWith("s-")) el.classList.remove(c);
  el.classList.add("s-" + state);
  if (el.classList.contains("badge")) el.textContent = state;
}

// Most log lines kept in the page; older ones stay a page away.
const MAX_LINES = 5000;

// An execution page: task states and logs from the server's events.
function liveExecution(main) {
  const url = main.dataset.events;
  if (!url || !window.EventSource) return;
  const logs = document.getElementById("logs");
  const search = document.getElementById("log-search");
  const matches = (line) => !search || !search.value || line.textContent.toLowerCase().includes(search.value.toLowerCase());
  const es = new EventSource(url);
  const taskState = (task, state) => {
    for (const el of document.querySelectorAll('[data-task="' + CSS.escape(task) + '"]')) setState(el, state);
  };
  es.addEventListener("state", (e) => {
    const s = JSON.parse(e.data);
    for (const el of document.querySelectorAll("[data-execution-state]")) setState(el, s.state);
    for (const [task, state] of Object.entries(s.tasks || {})) taskState(task, state);
  });
  es.addEventListener("task", (e) => { const t = JSON.parse(e.data); taskState(t.task, t.state); });
  // Lines wait here and are drawn once a frame: a burst of events costs
  // one layout, and lines the page would drop at once are never drawn.
  let pending = [];
  let drawing = false;
  const draw = () => {
    drawing = false;
    const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
    const frag = document.createDocumentFragment();
    for (const l of pending) {
      const line = document.createElement("span");
      line.className = "line";
      const task = document.createElement("span");
      task.className = "task";
      task.textContent = l.task + " | ";
      line.append(task, l.text, "\n");
      line.hidden = !matches(line);
      frag.append(line);
    }
    pending = [];
    logs.append(frag);
    const excess = logs.childElementCount - MAX_LINES;
    if (excess > 0) {
      const r = document.createRange();
      r.setStartBefore(logs.firstElementChild);
      r.setEndBefore(logs.children[excess]);
      r.deleteContents();
    }
    if (atEnd) logs.scrollTop = logs.scrollHeight;
  };
  es.addEventListener("logs", (e) => {
    if (!logs) return;
    pending.push(...JSON.parse(e.data));
    if (pending.length > MAX_LINES) pending = pending.slice(pending.length - MAX_LINES);
    if (!drawing) {
      drawing = true;
      requestAnimationFrame(draw);
    }
  });
  es.addEventListener("end", (e) => {
    const s = JSON.parse(e.data);
    for (const el of document.querySelectorAll("[data-execution-state]")) setState(el, s.state);
    // Ended: nothing left to cancel (a reload shows rerun).
    for (const f of document.querySelectorAll("form[action$='/cancel']")) f.remove();
    es.close();
  });
  if (search) {
    search.addEventListener("input", () => {
      for (const line of logs.children) line.hidden = !matches(line);
    });
  }
}

// A row of the executions list, as the server renders it.
function executionRow(e) {
  const cell = (...kids) => { const td = document.createElement("td"); td.append(...kids); return td; };
  const link = (href, text, code) => {
    const a = document.createElement("a");
    a.href = href;
    if (code) { const c = document.createElement("code"); c.textContent = text; a.append(c); } else a.textContent = text;
    return a;
  };
  const when = (at) => {
    if (!at) return "";
    const t = document.createElement("time");
    t.setAttribute("datetime", at);
    t.textContent = at;
    return t;
  };
  const trigger = e.trigger && e.trigger.kind
    ? (e.trigger.kind === "manual" ? "by " + (e.trigger.by || "someone") : e.trigger.kind + " " + (e.trigger.name || ""))
    : "by hand";
  const badge = document.createElement("span");
  badge.className = "badge s-" + e.state;
  badge.textContent = e.state;
  const tr = document.createElement("tr");
  tr.dataset.id = e.id;
  tr.append(cell(link("/executions/" + encodeURIComponent(e.id), e.id, true)),
    cell(link("/flows/" + encodeURIComponent(e.flow), e.flow, false)),
    cell(badge), cell(trigger), cell(when(e.started_at)), cell(when(e.ended_at)));
  localTimes(tr);
  return tr;
}

// The executions list: states refreshed from the API every two seconds,
// and on the first page, new executions added on top.
function liveList(table) {
  const tbody = table.querySelector("tbody");
  const refresh = async () => {
    const r = await fetch(table.dataset.live, { credentials: "same-origin" });
    if (!r.ok) return;
    const list = (await r.json()).executions;
    const shown = new Map([...tbody.querySelectorAll("tr[data-id]")].map((row) => [row.dataset.id, row]));
    if (table.dataset.first === "true") {
      const newest = tbody.querySelector("tr[data-id]");
      const fresh = [];
      for (const e of list) {
        if (newest && e.id === newest.dataset.id) break;
        if (!shown.has(e.id)) fresh.push(e);
      }
      for (const e of fresh.reverse()) tbody.prepend(executionRow(e));
      if (fresh.length) { const empty = document.getElementById("no-executions"); if (empty) empty.remove(); }
    }
    for (const e of list) {
      const badge = shown.get(e.id)?.querySelector(".badge");
      if (badge) setState(badge, e.state);
    }
  };
  setInterval(() => { refresh().catch(() => {}); }, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  copyButtons(document);
  countdowns();
  const main = document.querySelector("main[data-events]");
  if (main) liveExecution(main);
  const list = document.querySelector("table[data-live]");
  if (list) liveList(list);
});
