// The clinician page's only script: per-image label/site rows, drag and drop, heat-map opacity and switch.
// Served by the app itself; no framework, no network calls.
(function () {
  "use strict";

  function field(id, text, name, list) {
    const wrap = document.createElement("div");
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = text;
    const input = document.createElement("input");
    input.id = id;
    input.name = name;
    input.maxLength = name === "lesion_id" ? 128 : 64;
    if (list) input.setAttribute("list", list);
    wrap.append(label, input);
    return wrap;
  }

  function renderRows() {
    const rows = document.getElementById("lesion-rows");
    if (!rows) return;
    // Form order is document order: the multiple picker's files, then the camera's; the rows follow it.
    const files = [];
    document.querySelectorAll('#visit-form input[type="file"]').forEach(function (input) {
      Array.from(input.files || []).forEach(function (f) { files.push(f); });
    });
    rows.replaceChildren();
    files.forEach(function (f, i) {
      const set = document.createElement("fieldset");
      set.className = "lesion-row";
      const legend = document.createElement("legend");
      legend.textContent = "Lesion " + (i + 1) + ": " + f.name;
      set.append(legend,
        field("lesion-id-" + i, "Lesion label (optional)", "lesion_id"),
        field("body-site-" + i, "Body site (optional)", "body_site", "sites"));
      rows.append(set);
    });
  }

  document.querySelectorAll('#visit-form input[type="file"]').forEach(function (input) {
    input.addEventListener("change", renderRows);
  });

  const drop = document.getElementById("drop-zone");
  const picker = document.getElementById("images");
  if (drop && picker) {
    drop.addEventListener("dragover", function (e) { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
    drop.addEventListener("drop", function (e) {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer && e.dataTransfer.files.length) {
        picker.files = e.dataTransfer.files;
        renderRows();
      }
    });
  }

  document.querySelectorAll("input[data-heat]").forEach(function (range) {
    const img = document.getElementById(range.dataset.heat);
    range.addEventListener("input", function () { img.style.opacity = String(range.value / 100); });
  });
  document.querySelectorAll("input[data-heat-toggle]").forEach(function (box) {
    const img = document.getElementById(box.dataset.heatToggle);
    box.addEventListener("change", function () { img.hidden = !box.checked; });
  });
})();
