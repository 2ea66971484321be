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

  function handle(message) {
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
    };
    ws.onmessage = (msg) => handle(JSON.parse(msg.data));
    ws.onclose = () => {
      setStatus(opened ? "reconnecting…" : "offline", "warning");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
    window.vireoLive = ws;
  }

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
