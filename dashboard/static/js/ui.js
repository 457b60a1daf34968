// Table tools and navigation: search and sort any [data-sortable] table, and the phone menu button.
// Rows that arrive live over the stream are filtered and placed like the rest.
(function () {
  "use strict";

  function cellValue(row, index, kind) {
    var td = row.cells[index];
    if (!td) { return kind === "num" ? -Infinity : ""; }
    var raw = td.hasAttribute("data-value") ? td.getAttribute("data-value") : td.textContent.trim();
    if (kind !== "num") { return raw.toLowerCase(); }
    var n = parseFloat(raw);
    return isNaN(n) ? -Infinity : n;
  }

  function sortRows(wrap) {
    var th = wrap.querySelector('th[aria-sort="ascending"], th[aria-sort="descending"]');
    var body = wrap.querySelector("tbody");
    if (!th || !body) { return; }
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var kind = th.querySelector("[data-kind]").getAttribute("data-kind");
    var sign = th.getAttribute("aria-sort") === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.querySelectorAll("tr[data-node]"));
    rows.sort(function (a, b) {
      var x = cellValue(a, index, kind), y = cellValue(b, index, kind);
      return x < y ? -sign : x > y ? sign : 0;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function filterRows(input) {
    var wrap = document.getElementById(input.getAttribute("data-filter-table"));
    if (!wrap) { return; }
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = wrap.querySelectorAll("tbody tr[data-node]");
    var shown = 0;
    rows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var match = words.every(function (w) { return text.indexOf(w) >= 0; });
      row.hidden = !match;
      if (match) { shown += 1; }
    });
    var count = document.querySelector('[data-filter-count="' + wrap.id + '"]');
    if (count) { count.textContent = words.length ? shown + " of " + rows.length + " nodes" : ""; }
  }

  function setUpSorting(wrap) {
    wrap.querySelectorAll("button[data-sort]").forEach(function (button) {
      button.addEventListener("click", function () {
        var th = button.closest("th");
        var next = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
        wrap.querySelectorAll("th[aria-sort]").forEach(function (other) { other.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", next);
        sortRows(wrap);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-sortable]").forEach(setUpSorting);
    var inputs = document.querySelectorAll("input[data-filter-table]");
    inputs.forEach(function (input) {
      input.addEventListener("input", function () { filterRows(input); });
    });
    document.addEventListener("live:node", function () {
      document.querySelectorAll("[data-sortable]").forEach(sortRows);
      inputs.forEach(filterRows);
    });
    var toggle = document.querySelector("[data-nav-toggle]");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var open = toggle.getAttribute("aria-expanded") !== "true";
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
        document.body.classList.toggle("nav-open", open);
      });
    }
  });
})();
