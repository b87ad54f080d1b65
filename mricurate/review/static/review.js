// mricurate review: frames, boxes (toggle, draw), the decision form, keyboard shortcuts.
// Plain JavaScript served by the app itself (the Content-Security-Policy allows
// no other script and no inline one). Box geometry is in pixels of the image.
"use strict";

(function () {
  const item = document.getElementById("item");
  if (!item) {
    return;
  }
  const queueId = item.dataset.queue;
  const frames = parseInt(item.dataset.frames, 10) || 0;
  const original = document.getElementById("original");
  const cleaned = document.getElementById("cleaned");
  const overlay = document.getElementById("overlay");
  const form = document.getElementById("decide");
  const reason = document.getElementById("reason");
  const boxesField = document.getElementById("boxes-field");
  const errorLine = document.getElementById("form-error");
  const drawnList = document.getElementById("drawn-list");
  const SVG = "http://www.w3.org/2000/svg";
  let frame = 0;
  let boxesShown = true;
  const drawn = []; // {frame, x, y, width, height, rect}

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = !text;
  }

  function acceptedNumbers() {
    const numbers = new Set();
    document.querySelectorAll("input.accept").forEach(function (box) {
      if (box.checked) {
        numbers.add(box.dataset.n);
      }
    });
    return numbers;
  }

  function refreshBoxes() {
    if (!overlay) {
      return;
    }
    const accepted = acceptedNumbers();
    overlay.querySelectorAll("rect.box").forEach(function (rect) {
      const onFrame = rect.dataset.frame === "" || parseInt(rect.dataset.frame, 10) === frame;
      rect.classList.toggle("off", rect.dataset.n !== undefined && !accepted.has(rect.dataset.n));
      rect.style.display = boxesShown && onFrame ? "" : "none";
    });
  }

  const centreInput = document.getElementById("window-centre");
  const widthInput = document.getElementById("window-width");

  // The display window the reviewer chose ("" for the file's own, or robust percentiles).
  function windowQuery() {
    if (!centreInput || !widthInput || centreInput.value === "" || widthInput.value === "") {
      return "";
    }
    const width = parseFloat(widthInput.value);
    if (!(width > 0) || !isFinite(parseFloat(centreInput.value))) {
      return "";
    }
    return "?centre=" + encodeURIComponent(centreInput.value) +
      "&width=" + encodeURIComponent(widthInput.value);
  }

  function showFrame(n) {
    if (!frames) {
      return;
    }
    frame = (n + frames) % frames;
    const query = windowQuery();
    original.src = "/item/" + queueId + "/original/" + frame + ".png" + query;
    if (cleaned) {
      cleaned.src = "/item/" + queueId + "/cleaned/" + frame + ".png" + query;
    }
    document.getElementById("frame-number").textContent = String(frame + 1);
    refreshBoxes();
  }

  if (original && overlay) {
    const fit = function () {
      overlay.setAttribute("viewBox", "0 0 " + original.naturalWidth + " " + original.naturalHeight);
    };
    original.addEventListener("load", fit);
    if (original.complete && original.naturalWidth) {
      fit();
    }
  }

  // -- drawing boxes on the original ----------------------------------------------------

  function imagePoint(event) {
    const area = overlay.getBoundingClientRect();
    const x = ((event.clientX - area.left) * original.naturalWidth) / area.width;
    const y = ((event.clientY - area.top) * original.naturalHeight) / area.height;
    return {
      x: Math.max(0, Math.min(original.naturalWidth, x)),
      y: Math.max(0, Math.min(original.naturalHeight, y)),
    };
  }

  function listDrawn() {
    drawnList.replaceChildren();
    if (!drawn.length) {
      const none = document.createElement("li");
      none.className = "none";
      none.textContent = "None yet.";
      drawnList.appendChild(none);
      return;
    }
    drawn.forEach(function (box, index) {
      const entry = document.createElement("li");
      entry.textContent =
        "frame " + (box.frame + 1) + " · " + Math.round(box.width) + "×" +
        Math.round(box.height) + " px at (" + Math.round(box.x) + ", " + Math.round(box.y) + ") ";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove-drawn";
      remove.textContent = "remove";
      remove.addEventListener("click", function () {
        box.rect.remove();
        drawn.splice(index, 1);
        listDrawn();
      });
      entry.appendChild(remove);
      drawnList.appendChild(entry);
    });
  }

  if (overlay) {
    let start = null;
    let rect = null;
    overlay.addEventListener("mousedown", function (event) {
      if (event.button !== 0 || !original.naturalWidth) {
        return;
      }
      event.preventDefault();
      start = imagePoint(event);
      rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", "box drawn");
      rect.dataset.frame = String(frame);
      overlay.appendChild(rect);
    });
    overlay.addEventListener("mousemove", function (event) {
      if (!start) {
        return;
      }
      const point = imagePoint(event);
      rect.setAttribute("x", Math.min(start.x, point.x));
      rect.setAttribute("y", Math.min(start.y, point.y));
      rect.setAttribute("width", Math.abs(point.x - start.x));
      rect.setAttribute("height", Math.abs(point.y - start.y));
    });
    const finish = function (event) {
      if (!start) {
        return;
      }
      const point = imagePoint(event);
      const box = {
        frame: frame,
        x: Math.min(start.x, point.x),
        y: Math.min(start.y, point.y),
        width: Math.abs(point.x - start.x),
        height: Math.abs(point.y - start.y),
        rect: rect,
      };
      start = null;
      if (box.width < 2 || box.height < 2) {
        rect.remove(); // a click, not a box
        return;
      }
      drawn.push(box);
      listDrawn();
    };
    overlay.addEventListener("mouseup", finish);
    overlay.addEventListener("mouseleave", finish);
  }

  document.querySelectorAll("input.accept").forEach(function (box) {
    box.addEventListener("change", refreshBoxes);
  });

  // -- the decision ---------------------------------------------------------------------

  function redactionBoxes() {
    const boxes = [];
    const accepted = acceptedNumbers();
    if (overlay) {
      overlay.querySelectorAll("rect.box[data-n]").forEach(function (rect) {
        if (!accepted.has(rect.dataset.n)) {
          return;
        }
        boxes.push({
          frame: rect.dataset.frame === "" ? null : parseInt(rect.dataset.frame, 10),
          x: parseFloat(rect.getAttribute("x")),
          y: parseFloat(rect.getAttribute("y")),
          width: parseFloat(rect.getAttribute("width")),
          height: parseFloat(rect.getAttribute("height")),
          source: rect.dataset.source,
        });
      });
    }
    drawn.forEach(function (box) {
      boxes.push({
        frame: box.frame, x: box.x, y: box.y, width: box.width, height: box.height,
        source: "drawn",
      });
    });
    return boxes;
  }

  form.addEventListener("submit", function (event) {
    const decision = event.submitter ? event.submitter.value : "";
    showError("");
    if (decision === "reject" && !reason.value.trim()) {
      event.preventDefault();
      showError("Rejecting needs a reason: type it, then reject.");
      reason.focus();
      return;
    }
    if (decision === "redact") {
      const boxes = redactionBoxes();
      if (!boxes.length) {
        event.preventDefault();
        showError("Redacting needs a box: tick one, or draw one on the original.");
        return;
      }
      boxesField.value = JSON.stringify(boxes);
    } else {
      boxesField.value = "";
    }
  });

  // -- frames and keys ------------------------------------------------------------------

  const previous = document.getElementById("previous-frame");
  const next = document.getElementById("next-frame");
  const toggle = document.getElementById("toggle-boxes");
  if (previous) {
    previous.addEventListener("click", function () { showFrame(frame - 1); });
    [centreInput, widthInput].forEach(function (input) {
      if (input) {
        input.addEventListener("change", function () { showFrame(frame); });
      }
    });
    const reset = document.getElementById("window-reset");
    if (reset) {
      reset.addEventListener("click", function () {
        centreInput.value = "";
        widthInput.value = "";
        showFrame(frame);
      });
    }
    next.addEventListener("click", function () { showFrame(frame + 1); });
    toggle.addEventListener("click", function () {
      boxesShown = !boxesShown;
      refreshBoxes();
    });
  }

  document.addEventListener("keydown", function (event) {
    const typing = event.target.closest && event.target.closest("input, textarea, select");
    if (typing || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    const actions = {
      a: function () { form.requestSubmit(document.getElementById("approve")); },
      r: function () {
        if (reason.value.trim()) {
          form.requestSubmit(document.getElementById("reject"));
        } else {
          reason.focus();
        }
      },
      x: function () { form.requestSubmit(document.getElementById("redact")); },
      ArrowLeft: function () { showFrame(frame - 1); },
      ArrowRight: function () { showFrame(frame + 1); },
      b: function () { boxesShown = !boxesShown; refreshBoxes(); },
      w: function () { document.getElementById("window-reset").click(); },
      q: function () { window.location.assign("/"); },
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  refreshBoxes();
})();
