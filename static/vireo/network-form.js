// The network form shows only the fields of the chosen forward mode (fields carry data-modes); the
// hidden ones are disabled, so that values typed for another mode are not sent.
(function () {
  "use strict";
  const mode = document.getElementById("id_mode");
  if (!mode) return;
  function apply() {
    document.querySelectorAll("#network-form [data-modes]").forEach((el) => {
      const hidden = !el.dataset.modes.split(" ").includes(mode.value);
      el.hidden = hidden;
      el.querySelectorAll("input, select, textarea").forEach((input) => { input.disabled = hidden; });
    });
  }
  mode.addEventListener("change", apply);
  apply();
})();
