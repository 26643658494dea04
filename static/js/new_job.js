// New job: the batch upload's progress bar. htmx reports upload progress as htmx:xhr:progress
// on the form; an inline hx-on handler would need eval, which the CSP forbids, hence this file.
(function () {
  "use strict";

  function parts(form) {
    return {bar: form.querySelector("progress"), status: form.querySelector("[data-upload-status]")};
  }

  function uploadForm(event) {
    var form = event.detail && event.detail.elt;
    return form && form.matches && form.matches("form[data-upload-progress]") ? form : null;
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = uploadForm(event);
    if (!form) return;
    var p = parts(form);
    p.bar.value = 0;
    p.bar.hidden = false;
    p.status.textContent = "Uploading…";
  });

  document.addEventListener("htmx:xhr:progress", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-upload-progress]")) return;
    var p = parts(form);
    if (!event.detail.lengthComputable || !event.detail.total) return;
    var percent = Math.round(100 * event.detail.loaded / event.detail.total);
    if (percent < p.bar.value) return;   // the answer's download reports progress too
    p.bar.value = percent;
    p.status.textContent = percent >= 100 ? "Uploaded; checking and queueing the jobs…"
                                          : "Uploading… " + percent + " %";
  });
})();
