// The Create VM wizard: shows one step at a time; the server decides (after htmx validation) where to go.
(function () {
  "use strict";
  const form = document.getElementById("wizard");
  if (!form) return;
  const order = Array.from(document.querySelectorAll("#wizard-nav [data-wizard-go]")).map((b) => b.dataset.wizardGo);

  function show(step) {
    form.dataset.active = step;
    form.querySelectorAll(".wizard-step").forEach((s) => { s.hidden = s.dataset.step !== step; });
    document.querySelectorAll("#wizard-nav [data-wizard-go]").forEach((b) => {
      b.classList.toggle("active", b.dataset.wizardGo === step);
    });
    const last = step === order[order.length - 1];
    document.getElementById("wizard-next").hidden = last;
    document.getElementById("wizard-create").hidden = !last;
    document.getElementById("wizard-back").disabled = step === order[0];
    showSource();
  }

  function showSource() {
    const checked = form.querySelector("input[name=source]:checked");
    const source = checked ? checked.value : "";
    form.querySelectorAll("[data-source]").forEach((el) => { el.hidden = el.dataset.source !== source; });
  }

  document.addEventListener("click", (event) => {
    const go = event.target.closest("[data-wizard-go]");
    if (!go) return;
    event.preventDefault();
    const target = go.dataset.wizardGo;
    // Going back is free; going forward passes through the server's checks (the Next button).
    if (order.indexOf(target) <= order.indexOf(form.dataset.active) || go.dataset.wizardFocus) {
      show(target);
      const slot = go.dataset.wizardFocus && document.getElementById(go.dataset.wizardFocus);
      const input = slot && slot.parentElement.querySelector("input, select, textarea");
      if (input) input.focus();
    }
  });
  document.getElementById("wizard-back").addEventListener("click", () => {
    const index = order.indexOf(form.dataset.active);
    if (index > 0) show(order[index - 1]);
  });
  form.addEventListener("change", (event) => { if (event.target.name === "source") showSource(); });
  // Enter in a field means "Next" (with the server's checks), never "Create" before the review.
  form.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.target.tagName === "TEXTAREA") return;
    if (form.dataset.active !== order[order.length - 1]) {
      event.preventDefault();
      document.getElementById("wizard-next").click();
    }
  });
  form.addEventListener("submit", (event) => {
    if (form.dataset.active !== order[order.length - 1]) event.preventDefault();
  });
  // Old messages go before each check; the answer brings the current ones (out of band) and the step.
  document.body.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt && event.detail.elt.id === "wizard-next") {
      form.querySelectorAll(".wizard-error").forEach((el) => { el.textContent = ""; });
    }
  });
  document.body.addEventListener("vireo:wizard-step", (event) => show(event.detail.step));

  // Disk and NIC rows: "Add" copies the blank row with the next free number, the cross removes one.
  // The server reads whichever rows are posted, and names its messages by row number.
  function numberRows() {
    form.querySelectorAll("[data-wizard-rows]").forEach((list) => {
      list.querySelectorAll(":scope > [data-wizard-row]").forEach((row, index) => {
        const number = row.querySelector("[data-row-number]");
        if (number) number.textContent = String(index + 1);
      });
    });
  }
  form.addEventListener("click", (event) => {
    const add = event.target.closest("[data-wizard-add]");
    if (add) {
      const kind = add.dataset.wizardAdd;
      const list = document.getElementById(kind + "-rows");
      const used = Array.from(list.querySelectorAll(":scope > [data-wizard-row]")).map((r) => Number(r.dataset.wizardRow));
      const next = used.length ? Math.max(...used) + 1 : 0;
      const blank = document.getElementById(kind + "-row-template").innerHTML.replaceAll("__i__", String(next));
      list.insertAdjacentHTML("beforeend", blank);
      numberRows();
      const first = list.lastElementChild.querySelector("select, input");
      if (first) first.focus();
      return;
    }
    const remove = event.target.closest("[data-wizard-remove]");
    if (remove) {
      remove.closest("[data-wizard-row]").remove();
      numberRows();
    }
  });
  numberRows();
  const initial = document.getElementById("wizard-initial-errors");
  if (initial) {
    initial.content.querySelectorAll("[data-slot]").forEach((item) => {
      const slot = document.getElementById(item.dataset.slot);
      if (slot) slot.textContent = item.textContent;
    });
  }
  show(form.dataset.active || order[0]);
})();
