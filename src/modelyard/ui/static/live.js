// Live values without a full reload: an element with data-live="URL" gets the HTML fragment at
// URL every data-every seconds (5 by default) while the tab is visible; nothing else runs here.
(function () {
  "use strict";
  function refresh(el) {
    if (document.hidden) { return; }
    fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { el.innerHTML = html; el.dataset.updated = String(Date.now()); } })
      .catch(function () { /* the next tick tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var every = Math.max(1, Number(el.dataset.every || 5)) * 1000;
      setInterval(function () { refresh(el); }, every);
    });
  });
})();
