// The incident list, live: one EventSource (server-sent events, fed by a watch on the server); no polling.
"use strict";
(function () {
  var live = document.getElementById("live");
  var rows = document.getElementById("rows");
  if (!live || !rows || !window.EventSource) { return; }
  var source = new EventSource(live.getAttribute("data-feed"));
  source.addEventListener("open", function () { live.textContent = "Live: this list follows the cluster."; });
  source.addEventListener("rows", function (event) {
    rows.innerHTML = event.data;  // rendered and escaped by the server
    live.textContent = "Live: updated at " + new Date().toLocaleTimeString() + ".";
  });
  source.addEventListener("refused", function (event) {
    live.textContent = "Live, but the apiserver refused: " + event.data;
  });
  source.addEventListener("error", function () {
    live.textContent = "Live updates interrupted: reconnecting (the list may be stale until then).";
  });
})();
