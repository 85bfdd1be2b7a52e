// Drag-and-drop onto the photo box, a preview of the chosen photo, and an address for
// every observation query; the form works without it.
(function () {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("photo");
  const preview = document.getElementById("photo-preview");
  if (!zone || !input) return;
  function show() {
    const file = input.files && input.files[0];
    if (!file) { preview.hidden = true; return; }
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    document.getElementById("observation").value = "";
  }
  input.addEventListener("change", show);
  const form = document.getElementById("identify-form");
  const message = document.getElementById("client-error");
  form.addEventListener("submit", function (e) {
    const file = input.files && input.files[0];
    const limit = Number(form.dataset.maxUpload);
    if (file && limit && file.size > limit) {
      e.preventDefault();
      message.textContent = "The photo is " + (file.size / 1048576).toFixed(1) +
        " MB; this server takes photos up to " + (limit / 1048576).toFixed(1) + " MB.";
      message.hidden = false;
      return;
    }
    if (!file && document.getElementById("observation").value.trim()) {
      // An observation query goes in the address (GET /?observation=ID&...), so its answer
      // can be bookmarked and Back/Forward step through earlier queries. A photo cannot go
      // in an address: it is posted, and its answer has no address of its own.
      e.preventDefault();
      window.location.assign("/?" + queryString(form));
    }
  });
  // Back/Forward (and reload) show the fields of the query the page answers, not what
  // the browser remembers typing into them since.
  window.addEventListener("pageshow", function () { form.reset(); show(); });
  // Fields left at their defaults stay out of the address.
  const DEFAULTS = { role: "train", poisonous: "any", k: "10" };
  function queryString(f) {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(f)) {
      if (name === "photo" || typeof value !== "string") continue;
      const v = value.trim();
      if (v && DEFAULTS[name] !== v) params.append(name, v);
    }
    return params.toString();
  }
  zone.addEventListener("dragover", function (e) { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      show();
    }
  });
})();
