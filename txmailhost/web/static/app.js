// txmailhost webmail. New mail is pushed as Server-Sent Events from /events; each event
// becomes a "mail-changed" event on <body>, on which htmx reloads the folder and message
// lists (hx-trigger="mail-changed from:body"). No inline script anywhere: the page's
// Content-Security-Policy allows only files like this one.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var marker = document.querySelector("[data-events]");
    if (!marker || !window.EventSource) {
      return;
    }
    var changed = function () {
      document.body.dispatchEvent(new CustomEvent("mail-changed"));
    };
    var source = new EventSource(marker.getAttribute("data-events"));
    source.addEventListener("mailbox", changed);
    // Mail that arrived between the page's rendering and the stream's (re)connection was
    // announced to nobody: refresh once whenever the stream opens, reconnections included.
    source.addEventListener("open", changed);
  });
})();
