// Drag-and-drop onto the photo box and a preview of the chosen photo; the form works without it.
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
    }
  });
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
