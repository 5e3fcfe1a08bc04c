// New-badge toasts on the learner's page: the badges earned since the last visit, then live ones.
// Server-sent events first (the stream ends every 25 s and the browser reconnects from the last id);
// short polling where EventSource is missing or keeps failing. Each toast shown is marked seen.
(function () {
  "use strict";
  var box = document.getElementById("toasts");
  if (!box) { return; }
  var token = box.dataset.token, shown = {}, polling = null, failures = 0;
  var withToken = function (url, extra) { return url + "?lt=" + encodeURIComponent(token) + (extra || ""); };

  function markSeen(id) {
    fetch(box.dataset.seen + "?lt=" + encodeURIComponent(token), {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": box.dataset.csrf },
      body: JSON.stringify({ ids: [id] })
    });
  }

  function show(note) {
    if (shown[note.id]) { return; }
    shown[note.id] = true;
    var toast = document.createElement("div");
    toast.className = "toast";
    toast.setAttribute("role", "status");
    var message = document.createElement("span");
    message.textContent = note.message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast__close";
    close.textContent = box.dataset.close;
    close.addEventListener("click", function () { toast.remove(); });
    toast.appendChild(message);
    toast.appendChild(close);
    box.appendChild(toast);
    markSeen(note.id);
  }

  function poll() {
    fetch(withToken(box.dataset.poll))
      .then(function (answer) { return answer.ok ? answer.json() : { notifications: [] }; })
      .then(function (body) { body.notifications.forEach(show); });
  }

  function startPolling() {
    if (polling === null) { poll(); polling = setInterval(poll, 1000); }
  }

  if (!window.EventSource) { startPolling(); return; }
  var stream = new EventSource(withToken(box.dataset.stream));
  stream.onmessage = function (event) { failures = 0; show(JSON.parse(event.data)); };
  stream.onerror = function () {
    failures += 1;
    if (failures > 3) { stream.close(); startPolling(); }
  };
})();
