// Keyboard shortcuts for people working hundreds of cases a day. No inline handlers anywhere:
// the Content-Security-Policy forbids them. Buttons opt in with data-key="<letter>".
(function () {
  "use strict";

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("tr.case-row"));
  }

  function select(index) {
    var all = rows();
    if (!all.length) return;
    index = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (row, i) { row.classList.toggle("selected", i === index); });
    all[index].scrollIntoView({ block: "nearest" });
  }

  function selectedIndex() {
    return rows().findIndex(function (row) { return row.classList.contains("selected"); });
  }

  function toggleHelp() {
    var help = document.getElementById("help");
    if (help) help.hidden = !help.hidden;
  }

  // The inbox list refreshes itself; keep the j/k selection on the same case across refreshes.
  var selectedHref = null;
  document.addEventListener("htmx:beforeSwap", function () {
    var index = selectedIndex();
    selectedHref = index >= 0 ? rows()[index].dataset.href : null;
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (!selectedHref) return;
    var index = rows().findIndex(function (row) { return row.dataset.href === selectedHref; });
    if (index >= 0) select(index);
  });

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-help-toggle]");
    if (toggle) toggleHelp();
    var row = event.target.closest("tr.case-row");
    if (row && !event.target.closest("a")) window.location.assign(row.dataset.href);
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var key = event.key;
    if (key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (key === "Escape") { var help = document.getElementById("help"); if (help) help.hidden = true; return; }
    if (key === "j") { select(selectedIndex() + 1); event.preventDefault(); return; }
    if (key === "k") { select(selectedIndex() - 1); event.preventDefault(); return; }
    if (key === "Enter") {
      var index = selectedIndex();
      if (index >= 0) { window.location.assign(rows()[index].dataset.href); event.preventDefault(); }
      return;
    }
    var button = document.querySelector('button[data-key="' + key + '"]');
    if (button) { button.click(); event.preventDefault(); }
  });
})();
