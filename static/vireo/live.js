// Vireo live updates: one WebSocket per page (/ws/live/), no polling.
// Events update elements marked data-live="<kind>-<pk>" field by field; containers marked
// data-live-refresh="<kinds…>" are refetched with htmx when objects appear or vanish. Every event
// carries a per-group sequence number: a gap (missed events) or a reconnect refetches all containers.
(function () {
  "use strict";
  const url = document.body.dataset.liveUrl;
  const status = document.getElementById("live-status");
  const lastSeq = {};
  let backoff = 500;
  let refreshTimer = null;
  const pendingRefresh = new Set();

  function setStatus(text, style) {
    if (!status) return;
    status.textContent = text;
    status.className = "badge me-3 text-bg-" + style;
  }

  function refresh(kinds) {
    // Debounce: a burst of events refetches each container once.
    kinds.forEach((k) => pendingRefresh.add(k));
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      const all = pendingRefresh.has("*");
      document.querySelectorAll("[data-live-refresh]").forEach((el) => {
        const wants = el.dataset.liveRefresh.split(/\s+/);
        if (all || wants.some((w) => pendingRefresh.has(w))) htmx.trigger(el, "live-refresh");
      });
      pendingRefresh.clear();
    }, 150);
  }

  function applyFields(kind, pk, data) {
    document.querySelectorAll('[data-live="' + kind + "-" + pk + '"]').forEach((row) => {
      row.querySelectorAll("[data-field]").forEach((el) => {
        const name = el.dataset.field;
        if (!(name in data)) return;
        let value = data[name];
        if (Array.isArray(value)) value = value.join(", ");
        if (name === "memory_mib" && el.textContent.includes("MiB")) value = value + " MiB";
        el.textContent = value === null || value === "" ? "" : String(value);
        if (name === "state_label") {
          let badge = data.state_badge;
          if (!badge && el.dataset.badgeMap) badge = JSON.parse(el.dataset.badgeMap)[data.state];
          if (badge) el.className = el.className.replace(/text-bg-\S+/, "text-bg-" + badge);
        }
      });
    });
  }

  // CPU and memory sparklines: elements marked data-stats-vm="<pk>" start from data-points
  // ([[time, cpu %, memory %], ...]) and grow with the "stats" messages of the VMs this page asked for.
  const STATS_POINTS = 60;
  const SVG = "http://www.w3.org/2000/svg";

  function drawUse(el) {
    if (!el.vireoPoints) el.vireoPoints = JSON.parse(el.dataset.points || "[]");
    const points = el.vireoPoints.slice(-STATS_POINTS);
    el.replaceChildren();
    if (!points.length) return;
    const large = el.classList.contains("vm-use-large");
    const width = large ? 240 : 80;
    const height = large ? 48 : 20;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.classList.add("sparkline");
    [[1, "sparkline-cpu"], [2, "sparkline-memory"]].forEach(([index, cls]) => {
      const coords = [];
      points.forEach((p, i) => {
        if (p[index] === null || p[index] === undefined) return;
        const x = width - (points.length - 1 - i) * (width / (STATS_POINTS - 1));
        coords.push(x.toFixed(1) + "," + (height - 1 - (p[index] / 100) * (height - 2)).toFixed(1));
      });
      if (!coords.length) return;
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", coords.join(" "));
      line.setAttribute("class", cls);
      svg.appendChild(line);
    });
    const last = (index) => {
      for (let i = points.length - 1; i >= 0; i--) if (points[i][index] !== null) return points[i][index];
      return null;
    };
    const cpu = last(1);
    const memory = last(2);
    const label = document.createElement("span");
    label.className = "sparkline-label small text-body-secondary ms-1";
    label.textContent = "CPU " + (cpu === null ? "–" : Math.round(cpu) + " %") + " · mem " + (memory === null ? "–" : Math.round(memory) + " %");
    el.title = "CPU " + (cpu === null ? "not known yet" : cpu + " %") + ", memory " + (memory === null ? "not known" : memory + " %");
    el.append(svg, label);
  }

  function statsWanted() {
    const pks = new Set();
    document.querySelectorAll("[data-stats-vm]").forEach((el) => {
      drawUse(el);
      pks.add(Number(el.dataset.statsVm));
    });
    return Array.from(pks);
  }

  function askForStats() {
    const ws = window.vireoLive;
    const pks = statsWanted();
    if (ws && ws.readyState === WebSocket.OPEN && (pks.length || ws.vireoStatsAsked)) {
      ws.send(JSON.stringify({ stats: pks.slice(0, 250) }));
      ws.vireoStatsAsked = true;
    }
  }

  function applyStats(vms) {
    Object.entries(vms).forEach(([pk, point]) => {
      document.querySelectorAll('[data-stats-vm="' + pk + '"]').forEach((el) => {
        if (!el.vireoPoints) el.vireoPoints = JSON.parse(el.dataset.points || "[]");
        el.vireoPoints.push(point);
        if (el.vireoPoints.length > STATS_POINTS) el.vireoPoints.splice(0, el.vireoPoints.length - STATS_POINTS);
        drawUse(el);
      });
    });
  }
  // A refreshed table brings new rows (and their points): draw them and follow exactly those VMs.
  document.addEventListener("htmx:afterSettle", askForStats);

  function handle(message) {
    if (message.type === "stats") {
      applyStats(message.vms);
      return;
    }
    if (message.type === "subscribed") {
      Object.entries(message.groups).forEach(([group, seq]) => { lastSeq[group] = seq; });
      if (message.resync) refresh(["*"]); // the server saw that events may have been lost
      return;
    }
    if (message.type === "snapshot") {
      applyFields(message.kind, message.pk, message.data);
      refresh([message.kind + "-" + message.pk]);
      return;
    }
    if (message.type !== "event") return;
    const group = message.group;
    const expected = (lastSeq[group] || 0) + 1;
    // Any other number than the next one means missed events (or restarted counters): refetch.
    const gap = group in lastSeq && message.seq !== expected;
    lastSeq[group] = message.seq;
    if (gap) refresh(["*"]);
    const events = message.event.type === "batch" ? message.event.events : [message.event];
    const kinds = [];
    events.forEach((ev) => {
      if (ev.pk && ev.data) applyFields(ev.kind, ev.pk, ev.data);
      kinds.push(ev.kind);
      if (ev.pk) kinds.push(ev.kind + "-" + ev.pk);
      if (ev.type === "inventory.changed") kinds.push("inventory");
    });
    refresh(kinds);
    events.forEach((ev) => document.dispatchEvent(new CustomEvent("vireo:event", { detail: ev })));
  }

  function connect() {
    if (!url) return;
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + url);
    let opened = false;
    ws.onopen = () => {
      opened = true;
      backoff = 500;
      setStatus("live", "success");
      document.querySelectorAll("[data-live-subscribe]").forEach((el) => {
        ws.send(JSON.stringify({ subscribe: el.dataset.liveSubscribe }));
      });
      if (window.vireoLiveConnectedBefore) refresh(["*"]); // a reconnect: fetch the full current state
      window.vireoLiveConnectedBefore = true;
      askForStats();
    };
    ws.onmessage = (msg) => handle(JSON.parse(msg.data));
    ws.onclose = () => {
      setStatus(opened ? "reconnecting…" : "offline", "warning");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
    window.vireoLive = ws;
  }
  statsWanted(); // draw what the page came with, before the socket opens

  const toggle = document.getElementById("theme-toggle");
  if (toggle) {
    toggle.addEventListener("click", () => {
      const next = document.documentElement.dataset.bsTheme === "dark" ? "light" : "dark";
      document.documentElement.dataset.bsTheme = next;
      localStorage.setItem("vireo-theme", next);
    });
  }
  connect();
})();

// Keep the rows a user selected when a live refresh replaces a table.
(function () {
  let checked = [];
  document.addEventListener("htmx:beforeSwap", (e) => {
    checked = Array.from(e.detail.target.querySelectorAll("input[name=selected]:checked")).map((c) => c.value);
  });
  document.addEventListener("htmx:afterSwap", (e) => {
    e.detail.target.querySelectorAll("input[name=selected]").forEach((c) => { if (checked.includes(c.value)) c.checked = true; });
  });
})();
