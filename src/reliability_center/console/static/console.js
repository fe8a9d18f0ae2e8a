// Level 2 windows: the server writes the next opening in the window's own zone; the viewer's zone is known
// only here, so each <time class="window-opens"> gets its rendering in that zone too (YYYY-MM-DD HH:MM ZONE).
"use strict";
function localTimes(root) {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var format = new Intl.DateTimeFormat("en-CA", {timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
                                                 hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
  root.querySelectorAll("time.window-opens").forEach(function (element) {
    var parts = {};
    format.formatToParts(new Date(element.getAttribute("datetime"))).forEach(function (p) { parts[p.type] = p.value; });
    var local = document.createElement("span");
    local.className = "local-time";
    local.textContent = " (your time: " + parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" +
      parts.minute + " " + zone + ")";
    element.after(local);
  });
}
localTimes(document);

// An incident's page, live: one EventSource on a watch of that incident; "incident" is its body rendered again
// by the server (escaped, as the person). A comment being typed in an approval form is kept across the swap.
(function () {
  var holder = document.getElementById("incident");
  var live = document.getElementById("incident-live");
  if (!holder || !live || !window.EventSource) { return; }
  var source = new EventSource(holder.getAttribute("data-feed"));
  source.addEventListener("open", function () { live.textContent = "Live: this page follows the incident."; });
  source.addEventListener("incident", function (event) {
    var typed = {};
    holder.querySelectorAll("section.step input[name=comment]").forEach(function (input) {
      typed[input.closest("section.step").id] = input.value;
    });
    holder.innerHTML = event.data;
    Object.keys(typed).forEach(function (id) {
      var input = document.querySelector("#" + CSS.escape(id) + " input[name=comment]");
      if (input) { input.value = typed[id]; }
    });
    localTimes(holder);
    live.textContent = "Live: updated at " + new Date().toLocaleTimeString() + ".";
  });
  source.addEventListener("gone", function (event) { live.textContent = event.data; source.close(); });
  source.addEventListener("refused", function (event) {
    live.textContent = "Live, but the apiserver refused: " + event.data;
  });
  source.addEventListener("error", function () {
    live.textContent = "Live updates interrupted: reconnecting (the page may be stale until then).";
  });
})();

// The incident list, live: one EventSource (server-sent events, fed by a watch on the server); no polling.
// "rows" replaces the table (rendered and escaped by the server); "row" replaces, moves or removes one row.
"use strict";
(function () {
  var live = document.getElementById("live");
  var rows = document.getElementById("rows");
  if (!live || !rows || !window.EventSource) { return; }
  function find(key) {
    return key ? rows.querySelector('tr[data-name="' + CSS.escape(key) + '"]') : null;
  }
  function updated() { live.textContent = "Live: updated at " + new Date().toLocaleTimeString() + "."; }
  var source = new EventSource(live.getAttribute("data-feed"));
  source.addEventListener("open", function () { live.textContent = "Live: this list follows the cluster."; });
  source.addEventListener("rows", function (event) { rows.innerHTML = event.data; updated(); });
  source.addEventListener("row", function (event) {
    var change = JSON.parse(event.data);
    var old = find(change.key);
    if (old) { old.remove(); }
    if (change.html) {
      var empty = rows.querySelector("td.empty");
      if (empty) { empty.parentNode.remove(); }
      var holder = document.createElement("tbody");
      holder.innerHTML = change.html;
      rows.insertBefore(holder.firstElementChild, find(change.next));
    }
    updated();
  });
  source.addEventListener("refused", function (event) {
    live.textContent = "Live, but the apiserver refused: " + event.data;
  });
  source.addEventListener("error", function () {
    live.textContent = "Live updates interrupted: reconnecting (the list may be stale until then).";
  });
})();
