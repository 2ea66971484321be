// The task panel: live progress bars from /ws/live/ job events (see live.js), its collapsed/open
// state remembered per browser, double-click on a row opens the job's log.
(function () {
  "use strict";
  const panel = document.getElementById("task-panel");
  if (!panel) return;
  const body = document.getElementById("task-panel-body");
  const count = document.getElementById("task-panel-count");
  let refreshTimer = null;

  if (localStorage.getItem("vireo-task-panel") === "open") body.classList.add("show");
  body.addEventListener("show.bs.collapse", () => localStorage.setItem("vireo-task-panel", "open"));
  body.addEventListener("hide.bs.collapse", () => localStorage.setItem("vireo-task-panel", "closed"));

  function refreshPanel() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; htmx.trigger(body, "live-refresh"); }, 200);
  }

  function updateCount() {
    const list = body.querySelector("[data-active-count]");
    if (list && count) count.textContent = list.dataset.activeCount;
  }
  body.addEventListener("htmx:afterSwap", updateCount);

  function apply(pk, data) {
    const rows = document.querySelectorAll('[data-job="' + pk + '"]');
    rows.forEach((row) => {
      const bar = row.querySelector('[data-job-field="progress"]');
      if (bar) {
        bar.style.width = data.progress + "%";
        bar.textContent = data.progress + "%";
        if (bar.parentElement) bar.parentElement.setAttribute("aria-valuenow", data.progress);
      }
      const stage = row.querySelector('[data-job-field="stage"]');
      if (stage) stage.textContent = data.stage || "";
      const badge = row.querySelector('[data-job-field="state_label"]');
      if (badge) {
        badge.textContent = data.state_label;
        badge.className = badge.className.replace(/text-bg-\S+/, "text-bg-" + data.state_badge);
      }
    });
    return rows;
  }

  document.addEventListener("vireo:event", (e) => {
    const ev = e.detail;
    if (ev.kind !== "job" || !ev.data) return;
    const rows = apply(ev.pk, ev.data);
    const inPanel = body.querySelector('[data-job="' + ev.pk + '"]');
    // A new job, or one whose state changed (started, ended, cancel asked): redraw the panel.
    if (!inPanel || inPanel.dataset.jobState !== ev.data.state || ev.type === "job.created") refreshPanel();
    rows.forEach((row) => { row.dataset.jobState = ev.data.state; });
  });

  body.addEventListener("dblclick", (e) => {
    const row = e.target.closest("tr[data-url]");
    if (row) location.href = row.dataset.url;
  });
})();
