// The badge editor's live check: as the administrator types (debounced), the template is sent to the
// validate endpoint, which checks it as `badge-bridge badges check` does and as the form's submit will;
// its problems (file: key: reason) are shown next to the form. Without this script the submit shows them.
(function () {
  "use strict";
  var form = document.getElementById("badge-editor");
  if (!form) { return; }
  var area = document.getElementById("template");
  var image = document.getElementById("image");
  var summary = document.getElementById("template-summary");
  var list = document.getElementById("template-problems");
  var timer = null, sent = 0;

  function show(answer) {
    summary.textContent = answer.summary;
    summary.className = answer.valid ? "summary--ok" : "summary--bad";
    area.setAttribute("aria-invalid", answer.valid ? "false" : "true");
    while (list.firstChild) { list.removeChild(list.firstChild); }
    answer.messages.forEach(function (problem) {
      var item = document.createElement("li");
      item.textContent = problem.message;
      list.appendChild(item);
    });
  }

  function check() {
    var number = ++sent;
    fetch(form.dataset.validate + "?lt=" + encodeURIComponent(form.dataset.token), {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf },
      body: JSON.stringify({
        template: area.value,
        badge: form.dataset.badge || null,
        image_chosen: Boolean(image && image.files && image.files.length)
      })
    })
      .then(function (answer) { return answer.ok ? answer.json() : Promise.reject(answer.status); })
      .then(function (answer) { if (number === sent) { show(answer); } })
      .catch(function () { if (number === sent) { summary.textContent = form.dataset.failed; } });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(check, 400);
  }

  area.addEventListener("input", later);
  if (image) { image.addEventListener("change", check); }
  check();
})();
