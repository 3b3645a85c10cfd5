// The NemoVideo chat panel's view (anywidget ESM). Everything it shows comes from the model's
// traits and from the transcript pieces (model-only child widgets); what the person does goes
// back as messages ({event: "submit" | "stop" | "export" | "answer" | "action"}). HTML in the
// traits is made and escaped in Python; this file only places it.

const PREFIX = "IPY_MODEL_";
const ICONS = {
  logo:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M5 5.5v13a1 1 0 0 0 1.5.86l11-6.5a1 1 0 0 0 0-1.72l-11-6.5A1 1 0 0 0 5 5.5z" fill="currentColor"/></svg>',
  send:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3.5 20.5 21 12 3.5 3.5l.02 6.6L15 12 3.52 13.9z" fill="currentColor"/></svg>',
  stop:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="6.5" y="6.5" width="11" height="11" rx="2" fill="currentColor"/></svg>',
  film:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 5.5A1.5 1.5 0 0 1 5.5 4h13A1.5 1.5 0 0 1 20 5.5v13a1.5 1.5 0 0 1-1.5 1.5h-13A1.5 1.5 0 0 1 4 18.5zM8 4v16M16 4v16M4 9h4M4 15h4M16 9h4M16 15h4" fill="none" stroke="currentColor" stroke-width="1.6"/></svg>',
  close:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 6l12 12M18 6 6 18" stroke="currentColor" stroke-width="2" fill="none"/></svg>',
};

const TEMPLATE = `
<header class="nemo-header">
  <div class="nemo-brand"><span class="nemo-logo">${ICONS.logo}</span>
    <span class="nemo-name"></span><span class="nemo-session"></span><span class="nemo-claim"></span></div>
  <div class="nemo-header-right">
    <span class="nemo-credits" hidden></span>
    <button type="button" class="nemo-btn nemo-btn-secondary nemo-export">${ICONS.film}<span></span></button>
  </div>
</header>
<div class="nemo-scroll" role="log" aria-live="polite">
  <div class="nemo-empty">
    <div class="nemo-empty-title"></div><div class="nemo-empty-hint"></div>
    <div class="nemo-examples"></div>
  </div>
  <div class="nemo-log"></div>
  <div class="nemo-options-fallback" hidden></div>
</div>
<div class="nemo-dock" hidden>
  <section class="nemo-card nemo-video-card" hidden>
    <div class="nemo-card-head"><span class="nemo-card-title"></span>
      <a class="nemo-download" hidden></a></div>
    <div class="nemo-export-media nemo-video"></div>
    <div class="nemo-export-name"></div>
  </section>
  <section class="nemo-card nemo-tracks" hidden></section>
</div>
<footer class="nemo-composer">
  <div class="nemo-progress" hidden><div class="nemo-progress-bar"></div></div>
  <div class="nemo-actions"></div>
  <div class="nemo-input-row">
    <textarea class="nemo-prompt" rows="1"></textarea>
    <button type="button" class="nemo-btn nemo-btn-ghost nemo-stop">${ICONS.stop}<span></span></button>
    <button type="button" class="nemo-btn nemo-btn-primary nemo-send">${ICONS.send}<span></span></button>
  </div>
  <div class="nemo-statusbar"><span class="nemo-status-dot"></span>
    <span class="nemo-status"></span></div>
</footer>
<div class="nemo-lightbox" hidden role="dialog">
  <img alt=""><button type="button" class="nemo-lightbox-close">${ICONS.close}</button>
</div>`;

function elapsedLabel(seconds) {
  const whole = Math.floor(seconds);
  if (whole < 60) return `${whole} s`;
  const rest = String(whole % 60).padStart(2, "0");
  return `${Math.floor(whole / 60)} min ${rest} s`;
}

function render({ model, el }) {
  const labels = model.get("labels") || {};
  const word = (key) => labels[key] || key;
  const root = document.createElement("div");
  root.className = "nemo-panel";
  root.dataset.nemoPanel = model.get("panel_id");
  root.innerHTML = TEMPLATE;
  el.appendChild(root);
  const $ = (selector) => root.querySelector(selector);
  const scroll = $(".nemo-scroll");
  const log = $(".nemo-log");
  const prompt = $(".nemo-prompt");
  const sendButton = $(".nemo-send");
  const stopButton = $(".nemo-stop");
  const exportButton = $(".nemo-export");
  const cleanups = [];

  // -- static labels ----------------------------------------------------------------------
  $(".nemo-name").textContent = word("brand");
  $(".nemo-empty-title").textContent = word("empty_title");
  $(".nemo-empty-hint").textContent = word("empty_hint");
  $(".nemo-card-title").textContent = word("latest_export");
  for (const [button, key] of [[sendButton, "send"], [stopButton, "stop"], [exportButton, "export"]]) {
    button.setAttribute("aria-label", word(key)); // the label hides in narrow panels
  }
  sendButton.querySelector("span").textContent = word("send");
  sendButton.title = word("send_title");
  stopButton.querySelector("span").textContent = word("stop");
  stopButton.title = word("stop_title");
  exportButton.querySelector("span").textContent = word("export");
  exportButton.title = word("export_title");
  prompt.placeholder = word("placeholder");
  prompt.setAttribute("aria-label", word("placeholder"));
  $(".nemo-lightbox-close").title = word("close");
  for (const key of ["example_1", "example_2", "example_3"]) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "nemo-chip nemo-example";
    chip.textContent = word(key);
    chip.addEventListener("click", () => {
      prompt.value = word(key);
      grow();
      syncPromptSoon();
      prompt.focus();
    });
    $(".nemo-examples").appendChild(chip);
  }

  // -- the input --------------------------------------------------------------------------
  let promptTimer = null;
  const syncPromptNow = () => {
    clearTimeout(promptTimer);
    promptTimer = null;
    if (model.get("prompt") !== prompt.value) {
      model.set("prompt", prompt.value);
      model.save_changes();
    }
  };
  const syncPromptSoon = () => {
    clearTimeout(promptTimer);
    promptTimer = setTimeout(syncPromptNow, 300);
  };
  const grow = () => {
    prompt.style.height = "auto";
    prompt.style.height = `${Math.min(prompt.scrollHeight, 180)}px`;
  };
  const send = () => {
    const text = prompt.value;
    if (!text.trim()) {
      prompt.focus();
      return;
    }
    model.send({ event: "submit", text });
  };
  prompt.value = model.get("prompt") || "";
  prompt.addEventListener("input", () => {
    grow();
    syncPromptSoon();
  });
  const newLine = () => {
    // insertText keeps the browser's undo history; setRangeText where it is not supported
    if (!document.execCommand || !document.execCommand("insertText", false, "\n")) {
      prompt.setRangeText("\n", prompt.selectionStart, prompt.selectionEnd, "end");
      prompt.dispatchEvent(new Event("input"));
    }
  };
  prompt.setAttribute("data-lm-suppress-shortcuts", "true"); // JupyterLab: no cell shortcuts
  prompt.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.isComposing || event.keyCode === 229) return; // IME
    event.stopPropagation(); // neither Enter nor Shift+Enter runs the notebook's cell
    event.preventDefault();
    if (event.shiftKey) newLine();
    else send();
  });
  sendButton.addEventListener("click", send);
  stopButton.addEventListener("click", () => model.send({ event: "stop" }));
  exportButton.addEventListener("click", () => model.send({ event: "export" }));
  model.on("change:prompt", () => {
    if (promptTimer === null && prompt.value !== model.get("prompt")) {
      prompt.value = model.get("prompt");
      grow();
    }
  });
  model.on("msg:custom", (message) => {
    if (message && message.event === "sent" && prompt.value.trim() === message.text) {
      prompt.value = "";
      grow();
      syncPromptNow();
    }
  });

  // -- state: buttons, status, credits ----------------------------------------------------
  const syncBusy = () => {
    const busy = model.get("busy");
    root.classList.toggle("nemo-busy", busy);
    sendButton.disabled = busy;
    exportButton.disabled = busy;
    stopButton.disabled = !model.get("can_stop");
    root.querySelectorAll(".nemo-chip-action, .nemo-option").forEach((button) => {
      button.disabled = busy;
    });
  };
  const syncStatus = () => {
    $(".nemo-status").textContent = model.get("status");
    $(".nemo-status").title = model.get("status");
    root.dataset.tone = model.get("status_tone");
  };
  const syncProgress = () => {
    const value = model.get("progress");
    $(".nemo-progress").hidden = !(value >= 0);
    $(".nemo-progress-bar").style.width = `${Math.round(Math.max(value, 0) * 100)}%`;
  };
  const syncCredits = () => {
    const credits = $(".nemo-credits");
    credits.textContent = model.get("credits");
    credits.title = model.get("credits_title") || "";
    credits.hidden = !model.get("credits");
  };
  const syncSession = () => {
    $(".nemo-session").textContent = model.get("session_label") || "";
  };
  const syncClaim = () => {
    const claim = $(".nemo-claim");
    claim.innerHTML = model.get("claim_html") || "";
    const note = claim.querySelector(".nemo-claim-note");
    const link = claim.querySelector("a");
    if (note && link) link.title = note.textContent; // the note on hover; the link stays short
    claim.hidden = !claim.innerHTML;
  };

  // -- chips: suggested actions and the question's options --------------------------------
  const syncActions = () => {
    const box = $(".nemo-actions");
    box.replaceChildren();
    for (const action of model.get("actions") || []) {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = `nemo-chip nemo-chip-action nemo-action-${action.id}`;
      chip.textContent = action.label;
      chip.disabled = model.get("busy");
      chip.addEventListener("click", () => model.send({ event: "action", id: action.id }));
      box.appendChild(chip);
    }
    box.hidden = !box.children.length;
  };
  const syncOptions = () => {
    root.querySelectorAll(".nemo-option-buttons").forEach((node) => node.remove());
    root.querySelectorAll(".nemo-live").forEach((node) => node.classList.remove("nemo-live"));
    const options = model.get("options") || [];
    const fallback = $(".nemo-options-fallback");
    fallback.hidden = true;
    if (!options.length) return;
    const lists = log.querySelectorAll(".nemo-piece-options");
    const target = lists.length ? lists[lists.length - 1] : fallback;
    const box = document.createElement("div");
    box.className = "nemo-option-buttons nemo-options";
    const hint = document.createElement("div");
    hint.className = "nemo-option-hint";
    hint.textContent = word("answer_hint");
    box.appendChild(hint);
    options.forEach((option, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "nemo-chip nemo-option";
      button.textContent = option;
      button.title = option;
      button.disabled = model.get("busy");
      button.addEventListener("click", () => model.send({ event: "answer", number: index + 1 }));
      box.appendChild(button);
    });
    target.classList.add("nemo-live");
    target.appendChild(box);
    fallback.hidden = target !== fallback;
    stick();
  };

  // -- the transcript: groups of pieces, drawn as bubbles ---------------------------------
  // Follow new messages while the log is scrolled to its end; a person who scrolls up to read
  // stays where they are until they scroll back down. (A scroll event can arrive after more
  // content came in, so only scrolling above where the panel scrolled to unpins.)
  let pinned = true;
  let autoTop = 0;
  scroll.addEventListener("scroll", () => {
    if (scroll.scrollHeight - scroll.scrollTop - scroll.clientHeight < 48) pinned = true;
    else if (scroll.scrollTop < autoTop - 2) pinned = false;
  });
  const stick = () => {
    if (!pinned) return;
    scroll.scrollTop = scroll.scrollHeight;
    autoTop = scroll.scrollTop;
  };
  log.addEventListener("load", stick, true); // an image that loads grows the log
  const manager = model.widget_manager;
  const childModel = (ref) =>
    manager.get_model(typeof ref === "string" && ref.startsWith(PREFIX) ? ref.slice(PREFIX.length) : ref);
  let chain = Promise.resolve();
  const serial = (job) => {
    chain = chain.then(job).catch((error) => console.warn("NemoVideo panel:", error));
    return chain;
  };
  const groups = [];
  const pieces = [];
  const running = new Set();
  let bubble = null;

  const newBubble = (role, key) => {
    const row = document.createElement("div");
    row.className = `nemo-row nemo-row-${role}`;
    let body;
    if (role === "system") {
      body = document.createElement("div");
      body.className = "nemo-system";
      row.appendChild(body);
    } else {
      const box = document.createElement("div");
      box.className = `nemo-bubble nemo-bubble-${role}`;
      box.setAttribute("aria-label", role === "you" ? word("you") : word("agent"));
      if (role === "nemo") {
        const avatar = document.createElement("span");
        avatar.className = "nemo-avatar";
        avatar.innerHTML = ICONS.logo;
        row.appendChild(avatar);
        const who = document.createElement("div");
        who.className = "nemo-who";
        who.textContent = word("agent");
        box.appendChild(who);
      }
      body = box;
      row.appendChild(box);
    }
    log.appendChild(row);
    return { key, body };
  };
  const showElapsed = (state) => {
    const seconds = state.base + (performance.now() - state.since) / 1000;
    let span = state.node.querySelector(".nemo-st-time");
    if (seconds < 2) return;
    if (!span) {
      span = document.createElement("span");
      span.className = "nemo-st-time";
      state.node.appendChild(document.createTextNode(" "));
      state.node.appendChild(span);
    }
    span.textContent = elapsedLabel(seconds);
  };
  const drawPiece = (state) => {
    const piece = state.model;
    state.node.innerHTML = piece.get("html");
    const isRunning = piece.get("running");
    state.node.classList.toggle("nemo-running", isRunning);
    if (isRunning) {
      state.base = piece.get("elapsed") || 0;
      state.since = performance.now();
      running.add(state);
      showElapsed(state);
    } else {
      running.delete(state);
    }
    stick();
  };
  const addPiece = (piece) => {
    const role = piece.get("role");
    const key = `${role}:${piece.get("bubble")}`;
    if (!bubble || bubble.key !== key) bubble = newBubble(role, key);
    const node = document.createElement("div");
    node.className = `nemo-piece nemo-piece-${piece.get("kind")}`;
    bubble.body.appendChild(node);
    const state = { model: piece, node, base: 0, since: 0 };
    state.listener = () => drawPiece(state);
    piece.on("change", state.listener);
    pieces.push(state);
    drawPiece(state);
  };
  const syncPieces = async (group) => {
    const refs = group.model.get("pieces") || [];
    for (let index = group.count; index < refs.length; index++) {
      addPiece(await childModel(refs[index]));
      group.count = index + 1;
    }
    root.classList.toggle("nemo-has-log", pieces.length > 0);
    syncOptions();
    stick();
  };
  const syncGroups = async () => {
    const refs = model.get("groups") || [];
    for (let index = groups.length; index < refs.length; index++) {
      const group = { model: await childModel(refs[index]), count: 0 };
      group.listener = () => serial(() => syncPieces(group));
      group.model.on("change:pieces", group.listener);
      groups.push(group);
      await syncPieces(group);
    }
  };
  const timer = setInterval(() => running.forEach(showElapsed), 1000);
  cleanups.push(() => clearInterval(timer));
  cleanups.push(() => {
    groups.forEach((group) => group.model.off("change:pieces", group.listener));
    pieces.forEach((state) => state.model.off("change", state.listener));
  });

  // -- the dock: the latest export and the timeline ---------------------------------------
  let mediaUrl = null;
  const syncDock = () => {
    const videoCard = $(".nemo-video-card");
    const tracks = $(".nemo-tracks");
    $(".nemo-dock").hidden = videoCard.hidden && tracks.hidden;
    root.classList.toggle("nemo-has-dock", !$(".nemo-dock").hidden);
  };
  const syncExport = () => {
    const name = model.get("export_name");
    const mime = model.get("export_mime");
    const data = model.get("export_data");
    const media = $(".nemo-export-media");
    const download = $(".nemo-download");
    if (mediaUrl) URL.revokeObjectURL(mediaUrl);
    mediaUrl = null;
    media.replaceChildren();
    download.hidden = true;
    $(".nemo-video-card").hidden = !name;
    $(".nemo-export-name").textContent = name || "";
    $(".nemo-export-name").title = name || "";
    const size = data ? data.byteLength || 0 : 0;
    if (name && mime && size) {
      mediaUrl = URL.createObjectURL(new Blob([data], { type: mime }));
      let node;
      if (mime.startsWith("video/")) {
        node = document.createElement("video");
        node.controls = true;
        node.loop = false;
        node.preload = "metadata";
        node.playsInline = true;
        node.src = mediaUrl;
        node.textContent = name;
      } else {
        node = document.createElement("img");
        node.className = "nemo-thumb";
        node.alt = name;
        node.src = mediaUrl;
      }
      media.appendChild(node);
      download.href = mediaUrl;
      download.download = name;
      download.textContent = `↓ ${word("download")}`;
      download.title = name;
      download.hidden = false;
    } else if (model.get("export_note")) {
      const note = document.createElement("div");
      note.className = "nemo-export-note";
      note.textContent = model.get("export_note");
      media.appendChild(note);
    }
    syncDock();
  };
  const syncTimeline = () => {
    const tracks = $(".nemo-tracks");
    const wasOpen = !!tracks.querySelector("details[open]");
    tracks.innerHTML = model.get("timeline_html") || "";
    if (wasOpen) tracks.querySelectorAll("details").forEach((node) => (node.open = true));
    tracks.hidden = !model.get("timeline_html");
    syncDock();
  };
  cleanups.push(() => mediaUrl && URL.revokeObjectURL(mediaUrl));

  // -- full-size images -------------------------------------------------------------------
  const lightbox = $(".nemo-lightbox");
  const closeLightbox = () => {
    lightbox.hidden = true;
    lightbox.querySelector("img").removeAttribute("src");
  };
  root.addEventListener("click", (event) => {
    const image = event.target.closest && event.target.closest("img.nemo-thumb");
    if (image && root.contains(image) && !lightbox.contains(image)) {
      lightbox.querySelector("img").src = image.src;
      lightbox.querySelector("img").alt = image.alt;
      lightbox.hidden = false;
      lightbox.querySelector(".nemo-lightbox-close").focus();
    } else if (lightbox.contains(event.target)) {
      closeLightbox();
    }
  });
  root.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !lightbox.hidden) {
      event.stopPropagation();
      closeLightbox();
    }
  });

  // -- the saved copy: hidden wherever the live panel shows --------------------------------
  const panelId = model.get("panel_id");
  const hideCopies = () => {
    document.querySelectorAll(`.nemo-static-${panelId}`).forEach((node) => {
      const box = node.closest(".jp-OutputArea-child, .output_area") || node;
      if (box.contains(root)) return;
      box.classList.add("nemo-static-hidden");
      box.style.display = "none";
    });
  };
  let hidePending = false;
  const observer = new MutationObserver(() => {
    if (hidePending) return;
    hidePending = true;
    requestAnimationFrame(() => {
      hidePending = false;
      hideCopies();
    });
  });
  const watchCopies = () => {
    const area = root.closest(".jp-Cell, .jp-OutputArea, .cell") || document.body;
    observer.observe(area, { childList: true, subtree: true });
    hideCopies();
  };
  setTimeout(watchCopies, 0);
  cleanups.push(() => observer.disconnect());

  // -- wiring -----------------------------------------------------------------------------
  model.on("change:busy", syncBusy);
  model.on("change:can_stop", syncBusy);
  model.on("change:status", syncStatus);
  model.on("change:status_tone", syncStatus);
  model.on("change:progress", syncProgress);
  model.on("change:credits", syncCredits);
  model.on("change:credits_title", syncCredits);
  model.on("change:session_label", syncSession);
  model.on("change:claim_html", syncClaim);
  model.on("change:actions", syncActions);
  model.on("change:options", syncOptions);
  model.on("change:timeline_html", syncTimeline);
  // One redraw for the several export traits a change brings (a revoked URL must not load).
  let exportPending = false;
  const syncExportSoon = () => {
    if (exportPending) return;
    exportPending = true;
    queueMicrotask(() => {
      exportPending = false;
      syncExport();
    });
  };
  model.on("change:export_data", syncExportSoon);
  model.on("change:export_name", syncExportSoon);
  model.on("change:export_mime", syncExportSoon);
  model.on("change:export_note", syncExportSoon);
  model.on("change:groups", () => serial(syncGroups));
  syncStatus();
  syncProgress();
  syncCredits();
  syncSession();
  syncClaim();
  syncActions();
  syncTimeline();
  syncExport();
  syncBusy();
  serial(syncGroups).then(() => {
    pinned = true;
    stick();
  });
  requestAnimationFrame(grow);

  return () => cleanups.forEach((cleanup) => cleanup());
}

export default { render };
