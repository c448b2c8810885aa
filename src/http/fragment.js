// The script of the operator's fragment page (GET /callback.js). Banks answering
// `response_type=code id_token` put their answer in the URL fragment, which a browser never
// sends to a server: this reads it and posts it to the callback as a form, so that the
// browser follows the operator's answer (a redirect back to the app, say). It is a file, not
// an inline script, so the page's Content-Security-Policy can forbid inline scripts.
(function () {
  "use strict";
  var names = ["state", "code", "id_token", "error"];
  var answer = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  var message = document.getElementById("message");
  var carried = names.filter(function (name) {
    return answer.has(name);
  });
  if (carried.length === 0) {
    message.textContent =
      "There is no answer from your bank on this page. Start the authorisation again from the link you were given.";
    return;
  }
  // The code must not stay in the address bar or the history once it is posted.
  window.history.replaceState(null, "", window.location.pathname);
  var form = document.createElement("form");
  form.method = "post";
  form.action = window.location.pathname;
  carried.forEach(function (name) {
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = answer.get(name);
    form.appendChild(input);
  });
  document.body.appendChild(form);
  form.submit();
})();
