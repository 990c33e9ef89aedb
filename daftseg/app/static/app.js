// daftseg app page: plain JS on a canvas, no build step, no network beyond this server.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  const S = {
    info: null, scan: null, boxes: [], z: 0, slices: new Map(), overlay: null, overlayZ: -1,
    view: { s: 1, ox: 0, oy: 0 }, win: null, opening: 0, selected: null, drag: null, job: null, propagated: [],
    fastMasks: [],
  };
  window.daftApp = S; // the browser test reads the view transform from here
  // the link's token has set the cookie: keep it out of the address bar, history and screenshots
  if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);

  function message(text, kind) { const m = $("message"); m.textContent = text || ""; m.className = kind || ""; }
  // which image encoder answered, for the status line (the server names the file it ran)
  function encoderText(file) {
    if (!file) return "";
    return (/_int8\.xml$/.test(file) ? "fast: INT8 encoder " : "exact: standard encoder ") + file;
  }

  async function api(method, url, data, raw) {
    // the server takes JSON bodies as application/json and uploads as octet-stream only (guard.py)
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (raw) { opts.body = data; opts.headers["Content-Type"] = "application/octet-stream"; }
    else if (method !== "GET" && method !== "DELETE") {
      opts.body = JSON.stringify(data === undefined ? {} : data); opts.headers["Content-Type"] = "application/json";
    }
    const r = await fetch(url, opts);
    if (!r.ok) {
      let err = { error: r.status + " " + r.statusText };
      try { err = await r.json(); } catch (e) { /* not JSON */ }
      const e = new Error(err.error || "request failed"); e.status = r.status; e.body = err; throw e;
    }
    return r;
  }
  const json = async (method, url, data) => (await api(method, url, data)).json();
  async function binary(url) {
    const r = await api("GET", url);
    const shape = r.headers.get("X-Shape").split(",").map(Number);
    return { shape, buf: await r.arrayBuffer() };
  }
  function guard(fn) {
    return async (...a) => { try { await fn(...a); } catch (e) { message(e.message, "error"); } };
  }

  // ---- start: files, modalities, models ----
  async function init() {
    S.info = await json("GET", "/api/info");
    const ms = $("modality"); ms.innerHTML = "";
    ms.add(new Option("(from the file name)", ""));
    for (const m of [...S.info.modalities_3d, ...S.info.modalities_2d]) ms.add(new Option(m, m));
    const ws = $("window"); ws.innerHTML = "";
    ws.add(new Option("full range", "range"));
    for (const [k, v] of Object.entries(S.info.windows)) ws.add(new Option(`${k} (${v[0]}/${v[1]})`, k));
    const files = await refreshFiles();
    if (!files.length) message("No scans under the data folder; upload one.", "");
  }
  // only the file list: the user's choices in the other lists stay as they are
  async function refreshFiles() {
    const files = (await json("GET", "/api/files")).files;
    const fs = $("file-select"), keep = fs.value; fs.innerHTML = "";
    for (const f of files) fs.add(new Option(f.path + (f.kind === "dicom" ? "/ (DICOM)" : ""), f.path));
    if (keep) fs.value = keep;
    return files;
  }

  // The controls describe what is on screen: after a failed open they go back to the shown scan.
  function syncControls() {
    if (!S.scan) return;
    $("file-select").value = S.scan.path;
    $("modality").value = S.scan.modality || "";
    $("window").value = S.winKey || "range";
  }

  async function openPath(path, modality) {
    try { await openScan(path, modality); } catch (e) { syncControls(); throw e; }
  }
  async function openScan(path, modality) {
    message("opening " + path + " ...");
    const seq = ++S.opening; // two opens in flight (a modality change, then Open): the last asked wins
    const same = S.scan && S.scan.path === path, model = same ? $("model").value : "";
    const r = await json("POST", "/api/open", { path, modality: modality || null, model: model || null,
      fast: same ? $("fast").checked : null });
    if (seq !== S.opening) return;
    S.scan = r; S.boxes = r.boxes; S.propagated = r.propagated || []; S.slices.clear(); S.overlay = null;
    showFast(r);
    S.selected = null; S.overlayZ = -1;
    S.z = r.is_3d ? Math.floor(r.shape[0] / 2) : 0;
    const sl = $("slider"); sl.max = r.is_3d ? r.shape[0] - 1 : 0; sl.value = S.z; sl.disabled = !r.is_3d;
    const ms = $("model"); ms.innerHTML = "";
    ms.add(new Option(`routed: ${r.route.model} (${r.route.name})`, ""));
    for (const m of S.info.models) ms.add(new Option(m, m));
    ms.value = r.model === r.route.model ? "" : r.model;
    $("file-select").value = path;
    $("modality").value = r.modality || "";
    const ws = $("window");
    ws.value = r.rgb ? "range" : (r.modality === "CT" && r.is_3d ? "abdomen" : "range");
    setWindow();
    const stem = path.replace(/\/$/, "").replace(/(\.nii\.gz|\.[A-Za-z0-9]+)$/, "");
    const ext = r.format === "image" ? ".png" : r.format === "npz" ? ".npz" : r.format === "nrrd" ? ".nrrd" :
      r.format === "mha" ? ".mha" : (path.endsWith(".nii") ? ".nii" : ".nii.gz");
    $("output").value = stem + "_seg" + ext;
    $("scan-info").textContent = `${r.format} ${r.shape.join("x")} (${r.is_3d ? "D,H,W" : "H,W"}), ` +
      `modality ${r.modality || "-"}, spacing ${r.spacing.map((v) => +v.toFixed(3)).join(", ")} mm` +
      (r.view && r.view.plane !== "as stored" ? `, ${r.view.edges ? r.view.plane + " view" : "shown " + r.view.plane}` : "");
    fit(); renderBoxes(); await loadSlice(); message("opened " + path, "ok");
  }

  function setWindow() {
    const v = $("window").value;
    if (!S.scan) return;
    S.winKey = v;
    if (v === "range" || !S.info.windows[v]) S.win = { lo: S.scan.range[0], hi: S.scan.range[1] };
    else { const [l, w] = S.info.windows[v]; S.win = { lo: l - w / 2, hi: l + w / 2 }; }
    draw();
  }

  // ---- slices and overlay ----
  async function loadSlice() {
    if (!S.scan) return;
    const z = S.z, key = S.scan.id + ":" + z;
    if (!S.slices.has(key)) {
      const { shape, buf } = await binary(`/api/scans/${S.scan.id}/slice?z=${z}`);
      S.slices.set(key, { shape, data: new Float32Array(buf) });
      if (S.slices.size > 24) S.slices.delete(S.slices.keys().next().value);
    }
    await loadOverlay();
  }
  async function loadOverlay() {
    if (!S.scan) return;
    const z = S.z;
    const { shape, buf } = await binary(`/api/scans/${S.scan.id}/overlay?z=${z}`);
    if (z !== S.z) return;
    S.overlay = { shape, data: new Uint16Array(buf) }; S.overlayZ = z;
    draw();
  }

  function hexRGB(h) { return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)); }
  const off = document.createElement("canvas"), offCtx = off.getContext("2d");

  // ---- orientation: the stored slice -> the screen (transpose, then mirror; io/orientation.py) ----
  // Voxel coordinates (x = column, y = row; continuous, voxel centres at +0.5) are what boxes, the
  // cursor and the server use; display coordinates are the picture as shown.
  function orient() { return S.scan.view || { transpose: false, flip_x: false, flip_y: false }; }
  function dims() { // [display width, display height]
    const [h, w] = S.scan.shape.slice(-2);
    return orient().transpose ? [h, w] : [w, h];
  }
  function voxToDisp(x, y) {
    const o = orient(), [dw, dh] = dims();
    const [a, b] = o.transpose ? [y, x] : [x, y];
    return [o.flip_x ? dw - a : a, o.flip_y ? dh - b : b];
  }
  function dispToVox(u, v) {
    const o = orient(), [dw, dh] = dims();
    const a = o.flip_x ? dw - u : u, b = o.flip_y ? dh - v : v;
    return o.transpose ? [b, a] : [a, b];
  }
  // display pixel -> index of the stored pixel shown there (once per scan)
  function pixelMap() {
    if (S.pixmap && S.pixmapFor === S.scan.id) return S.pixmap;
    const [dw, dh] = dims(), w = S.scan.shape[S.scan.shape.length - 1], map = new Int32Array(dw * dh);
    for (let v = 0; v < dh; v++) for (let u = 0; u < dw; u++) {
      const [x, y] = dispToVox(u + 0.5, v + 0.5);
      map[v * dw + u] = Math.floor(y) * w + Math.floor(x);
    }
    S.pixmap = map; S.pixmapFor = S.scan.id;
    return map;
  }

  function composite() {
    const sl = S.slices.get(S.scan.id + ":" + S.z);
    if (!sl) return false;
    const c = sl.shape[2] || 1, [dw, dh] = dims(), map = pixelMap();
    if (off.width !== dw || off.height !== dh) { off.width = dw; off.height = dh; }
    const img = offCtx.createImageData(dw, dh), px = img.data, d = sl.data;
    const lo = S.win.lo, span = Math.max(1e-6, S.win.hi - S.win.lo);
    const colours = S.boxes.map((b) => hexRGB(b.colour));
    const ov = S.overlay && S.overlayZ === S.z ? S.overlay.data : null;
    for (let q = 0, n = dw * dh; q < n; q++) {
      const i = map[q];
      let r, g, b;
      if (c === 3) { r = d[3 * i]; g = d[3 * i + 1]; b = d[3 * i + 2]; }
      else { r = g = b = Math.max(0, Math.min(255, ((d[i] - lo) / span) * 255)); }
      const k = ov ? ov[i] : 0;
      if (k > 0 && colours[k - 1]) {
        const col = colours[k - 1];
        r = 0.55 * r + 0.45 * col[0]; g = 0.55 * g + 0.45 * col[1]; b = 0.55 * b + 0.45 * col[2];
      }
      px[4 * q] = r; px[4 * q + 1] = g; px[4 * q + 2] = b; px[4 * q + 3] = 255;
    }
    offCtx.putImageData(img, 0, 0);
    return true;
  }

  function boxesOnSlice() {
    return S.boxes.filter((b) => !S.scan.is_3d || (b.coords[2] <= S.z && S.z <= b.coords[5]) || b.slice === S.z);
  }
  function xy(b) { return S.scan.is_3d ? [b.coords[0], b.coords[1], b.coords[3], b.coords[4]] : b.coords.slice(); }

  function draw() {
    const rect = canvas.getBoundingClientRect();
    if (canvas.width !== Math.round(rect.width) || canvas.height !== Math.round(rect.height)) {
      canvas.width = Math.round(rect.width); canvas.height = Math.round(rect.height);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0); ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!S.scan || !composite()) return;
    const v = S.view;
    ctx.imageSmoothingEnabled = false;
    ctx.setTransform(v.s, 0, 0, v.s, v.ox, v.oy);
    ctx.drawImage(off, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const shown = S.drag && S.drag.mode === "new" ? [...boxesOnSlice(), S.drag.box] : boxesOnSlice();
    for (const b of shown) {
      const [x0, y0, x1, y1] = xy(b);
      const [ax, ay] = toScreen(x0, y0), [hx, hy] = toScreen(x1 + 1, y1 + 1); // hx, hy: the resize handle
      ctx.strokeStyle = b.colour; ctx.lineWidth = b.id === S.selected ? 2.5 : 1.5;
      ctx.setLineDash(S.scan.is_3d && b.slice !== S.z ? [5, 4] : []);
      ctx.strokeRect(Math.min(ax, hx), Math.min(ay, hy), Math.abs(hx - ax), Math.abs(hy - ay));
      if (b.id === S.selected) { ctx.fillStyle = b.colour; ctx.fillRect(hx - 4, hy - 4, 8, 8); }
    }
    ctx.setLineDash([]);
    drawOrientation();
    $("slice-text").textContent = S.scan.is_3d ? `slice ${S.z} / ${S.scan.shape[0] - 1}` : "2D";
  }

  // the orientation letters at the canvas edges, or why there are none
  function drawOrientation() {
    const o = orient(), W = canvas.width, H = canvas.height;
    ctx.font = "bold 14px system-ui, sans-serif"; ctx.fillStyle = "#ffd54a"; ctx.textBaseline = "middle";
    if (o.edges) {
      ctx.textAlign = "left"; ctx.fillText(o.edges.left, 6, H / 2);
      ctx.textAlign = "right"; ctx.fillText(o.edges.right, W - 6, H / 2);
      ctx.textAlign = "center"; ctx.fillText(o.edges.top, W / 2, 12); ctx.fillText(o.edges.bottom, W / 2, H - 12);
    } else if (o.plane === "as stored (oblique)") {
      ctx.textAlign = "left"; ctx.fillText("shown as stored (oblique)", 6, 12);
    }
    ctx.textAlign = "start"; ctx.textBaseline = "alphabetic";
  }

  // ---- view transform: display -> screen (zoom, pan) ----
  function toScreen(x, y) { const [u, v] = voxToDisp(x, y); return [u * S.view.s + S.view.ox, v * S.view.s + S.view.oy]; }
  function screenToDisp(sx, sy) { return [(sx - S.view.ox) / S.view.s, (sy - S.view.oy) / S.view.s]; }
  function toImage(sx, sy) { return dispToVox(...screenToDisp(sx, sy)); }
  S.toScreen = toScreen;
  function fit() {
    if (!S.scan) return;
    const rect = canvas.getBoundingClientRect();
    const [w, h] = dims();
    const s = Math.min(rect.width / w, rect.height / h) * 0.95;
    S.view = { s, ox: (rect.width - w * s) / 2, oy: (rect.height - h * s) / 2 };
    draw();
  }
  function zoom(f, cx, cy) {
    const rect = canvas.getBoundingClientRect();
    cx = cx ?? rect.width / 2; cy = cy ?? rect.height / 2;
    const [u, v] = screenToDisp(cx, cy);
    S.view.s *= f; S.view.ox = cx - u * S.view.s; S.view.oy = cy - v * S.view.s; draw();
  }

  // ---- mouse: draw, move, resize, pan ----
  function pos(e) { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
  function voxel(e) {
    const [ix, iy] = toImage(...pos(e));
    const [h, w] = S.scan.shape.slice(-2);
    return [Math.min(w - 1, Math.max(0, Math.floor(ix))), Math.min(h - 1, Math.max(0, Math.floor(iy))), ix, iy];
  }
  function hit(e) {
    const [, , ix, iy] = voxel(e), tol = 6 / S.view.s;
    for (const b of boxesOnSlice().slice().reverse()) {
      const [x0, y0, x1, y1] = xy(b);
      if (Math.abs(ix - (x1 + 1)) < tol && Math.abs(iy - (y1 + 1)) < tol) return { b, mode: "resize" };
      if (ix >= x0 && ix <= x1 + 1 && iy >= y0 && iy <= y1 + 1) return { b, mode: "move" };
    }
    return null;
  }
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("mousedown", (e) => {
    if (!S.scan) return;
    const [px, py] = pos(e);
    if (e.button !== 0) { S.drag = { mode: "pan", px, py, ox: S.view.ox, oy: S.view.oy }; return; }
    // Shift: a new box wherever the drag starts (an organ's box often starts inside another's)
    const [vx, vy] = voxel(e), h = e.shiftKey ? null : hit(e);
    if (h) {
      S.selected = h.b.id; renderBoxes();
      S.drag = { mode: h.mode, id: h.b.id, vx, vy, orig: h.b.coords.slice() };
    } else {
      S.selected = null;
      S.drag = { mode: "new", vx, vy, box: { id: -1, colour: $("new-colour").value, coords: [], slice: S.z } };
      setDragBox(vx, vy);
    }
    draw();
  });
  function setDragBox(vx, vy) {
    const d = S.drag, x0 = Math.min(d.vx, vx), x1 = Math.max(d.vx, vx), y0 = Math.min(d.vy, vy), y1 = Math.max(d.vy, vy);
    d.box.coords = S.scan.is_3d ? [x0, y0, S.z, x1, y1, S.z] : [x0, y0, x1, y1];
  }
  canvas.addEventListener("mousemove", (e) => {
    if (!S.scan) return;
    const [vx, vy] = voxel(e);
    const sl = S.slices.get(S.scan.id + ":" + S.z);
    if (sl) {
      const w = sl.shape[1], c = sl.shape[2] || 1, i = (vy * w + vx) * c;
      const val = c === 3 ? `${sl.data[i]},${sl.data[i + 1]},${sl.data[i + 2]}` : +sl.data[i].toFixed(2);
      $("cursor").textContent = `x ${vx}, y ${vy}` + (S.scan.is_3d ? `, slice ${S.z}` : "") + `: ${val}`;
    }
    const d = S.drag;
    if (!d) return;
    if (d.mode === "pan") { const [px, py] = pos(e); S.view.ox = d.ox + px - d.px; S.view.oy = d.oy + py - d.py; }
    else if (d.mode === "new") setDragBox(vx, vy);
    else {
      const b = S.boxes.find((q) => q.id === d.id), n = S.scan.is_3d ? 3 : 2, c = d.orig.slice();
      const [h, w] = S.scan.shape.slice(-2);
      if (d.mode === "move") {
        const dx = Math.max(-c[0], Math.min(w - 1 - c[n], vx - d.vx)), dy = Math.max(-c[1], Math.min(h - 1 - c[n + 1], vy - d.vy));
        c[0] += dx; c[n] += dx; c[1] += dy; c[n + 1] += dy;
      } else { c[n] = Math.max(c[0], vx); c[n + 1] = Math.max(c[1], vy); }
      b.coords = c; d.moved = true;
    }
    draw();
  });
  window.addEventListener("mouseup", guard(async (e) => {
    const d = S.drag; S.drag = null;
    if (!d || !S.scan) return;
    if (d.mode === "new") {
      const c = d.box.coords, n = S.scan.is_3d ? 3 : 2;
      if (c[n] - c[0] < 1 && c[n + 1] - c[1] < 1) { draw(); return; } // a click, not a box
      if (S.scan.is_3d) { // a 3D box starts as the drawn slice +-2 (DAFT needs z_max > z_min); edit the range below
        c[2] = Math.max(0, S.z - 2); c[5] = Math.min(S.scan.shape[0] - 1, Math.max(S.z + 2, c[2] + 1));
      }
      const box = { coords: c, label: +$("new-label").value, colour: $("new-colour").value, name: $("new-name").value || null };
      if (S.scan.is_3d) box.slice = S.z;
      const r = await json("POST", `/api/scans/${S.scan.id}/boxes`, { box });
      S.selected = r.box.id; $("new-label").value = Math.min(65535, box.label + 1);
      $("new-colour").value = nextColour(box.colour);
      accept(r);
      message(`box ${S.boxes.length}: mask in ${(r.seconds * 1000).toFixed(0)} ms (${encoderText(r.encoder)})`, "ok");
    } else if ((d.mode === "move" || d.mode === "resize") && d.moved) {
      const b = S.boxes.find((q) => q.id === d.id);
      const r = await json("PUT", `/api/scans/${S.scan.id}/boxes/${d.id}`, { box: { coords: b.coords } });
      accept(r);
    }
    await loadOverlay();
  }));
  canvas.addEventListener("wheel", guard(async (e) => {
    if (!S.scan) return;
    e.preventDefault();
    const [px, py] = pos(e);
    if (!S.scan.is_3d || e.ctrlKey) { zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15, px, py); return; }
    setSlice(S.z + (e.deltaY > 0 ? 1 : -1));
  }), { passive: false });
  const PALETTE = ["#ff3030", "#30c030", "#3080ff", "#ffc020", "#c040ff", "#20d0d0", "#ff8020", "#ff60b0"];
  function nextColour(c) { const i = PALETTE.indexOf(c.toLowerCase()); return PALETTE[(i + 1) % PALETTE.length]; }

  const setSlice = guard(async (z) => {
    if (!S.scan || !S.scan.is_3d) return;
    S.z = Math.max(0, Math.min(S.scan.shape[0] - 1, z)); $("slider").value = S.z; draw(); await loadSlice();
  });

  // ---- boxes list ----
  function accept(r) {
    S.boxes = r.boxes; S.propagated = r.propagated || []; showFast(r); renderBoxes(); draw();
  }
  // the Fast switch exists only for a model with an INT8 encoder; masks made with it are marked
  function showFast(r) {
    $("fast-row").hidden = !r.fast_available; $("fast").checked = !!r.fast; S.fastMasks = r.fast_masks || [];
  }
  function renderBoxes() {
    const host = $("boxes"); host.innerHTML = "";
    S.boxes.forEach((b, i) => {
      const div = document.createElement("div");
      div.className = "box" + (b.id === S.selected ? " selected" : ""); div.dataset.id = b.id;
      const z = S.scan.is_3d ? `<div class="row">slices <input type="number" class="zmin" value="${b.coords[2]}">` +
        `<button class="zmin-here" title="start at this slice">&#8676;</button> to <input type="number" class="zmax" value="${b.coords[5]}">` +
        `<button class="zmax-here" title="end at this slice">&#8677;</button></div>` +
        `<div class="row small">DAFT segments slices z_min..z_max-1 ${S.propagated.includes(b.id) ? "(propagated)" : ""}</div>` +
        `<div class="row"><button class="propagate">Propagate</button> <button class="goto">Go to slice ${b.slice}</button></div>` : "";
      div.innerHTML = `<div class="row"><b>#${i + 1}</b> <input type="number" class="label" min="1" max="65535" value="${b.label}">` +
        `<input type="color" class="colour" value="${b.colour}"><input type="text" class="name" placeholder="name">` +
        `<button class="delete" title="delete">&#10005;</button>` +
        (S.fastMasks.includes(b.id) ? `<span class="fast-tag" title="mask made in fast mode (INT8 image encoder)">fast</span>` : "") +
        `</div>` +
        `<div class="row small">[${b.coords.join(", ")}]</div>` + z;
      div.querySelector(".name").value = b.name || "";
      const put = guard(async (changes) => {
        accept(await json("PUT", `/api/scans/${S.scan.id}/boxes/${b.id}`, { box: changes })); await loadOverlay();
      });
      div.querySelector(".label").addEventListener("change", (e) => put({ label: +e.target.value }));
      div.querySelector(".colour").addEventListener("change", (e) => put({ colour: e.target.value }));
      div.querySelector(".name").addEventListener("change", (e) => put({ name: e.target.value || null }));
      div.querySelector(".delete").addEventListener("click", guard(async () => {
        accept(await json("DELETE", `/api/scans/${S.scan.id}/boxes/${b.id}`)); await loadOverlay();
      }));
      div.addEventListener("click", (e) => { if (e.target === div) { S.selected = b.id; renderBoxes(); draw(); } });
      if (S.scan.is_3d) {
        const setZ = (lo, hi) => { const c = b.coords.slice(); c[2] = lo; c[5] = hi; put({ coords: c }); };
        div.querySelector(".zmin").addEventListener("change", (e) => setZ(+e.target.value, b.coords[5]));
        div.querySelector(".zmax").addEventListener("change", (e) => setZ(b.coords[2], +e.target.value));
        div.querySelector(".zmin-here").addEventListener("click", () => setZ(S.z, b.coords[5]));
        div.querySelector(".zmax-here").addEventListener("click", () => setZ(b.coords[2], S.z));
        div.querySelector(".propagate").addEventListener("click", guard(() => propagate(b.id)));
        div.querySelector(".goto").addEventListener("click", () => setSlice(b.slice));
      }
      host.appendChild(div);
    });
  }

  // ---- propagation ----
  async function propagate(id) {
    const job = await json("POST", `/api/scans/${S.scan.id}/propagate`, { box_id: id });
    $("job").hidden = false; $("progress").value = 0; message("propagating ...");
    await poll(job);
  }
  async function poll(job) {
    let shown = 0;
    while (true) {
      $("progress").value = job.total ? job.done / job.total : 0;
      $("job-text").textContent = `${job.done} / ${job.total} slices` +
        (job.eta != null ? `, about ${Math.ceil(job.eta)} s left` : "");
      if (job.state !== "running") break;
      if (job.done !== shown) { shown = job.done; await loadOverlay(); } // each slice's mask as it comes
      await new Promise((r) => setTimeout(r, 150));
      job = await json("GET", `/api/scans/${S.scan.id}/job`);
    }
    $("job").hidden = true;
    accept(await json("GET", `/api/scans/${S.scan.id}/state`));
    await loadOverlay();
    if (job.state === "done") message(`propagated over ${job.total} slices in ${job.seconds.toFixed(1)} s (${encoderText(job.encoder)})`, "ok");
    else message(job.state === "cancelled" ? "propagation cancelled" : "propagation failed: " + job.error,
      job.state === "cancelled" ? "" : "error");
  }

  // ---- save ----
  async function save(overwrite) {
    try {
      message("saving ...");
      const r = await json("POST", `/api/scans/${S.scan.id}/save`, { output: $("output").value, overwrite });
      message("saved " + r.written.join(", "), "ok");
    } catch (e) {
      if (e.status === 409 && !overwrite && window.confirm(e.message)) return save(true);
      message(e.message, "error");
    }
  }

  // ---- controls ----
  $("open-btn").addEventListener("click", guard(() => openPath($("file-select").value, $("modality").value)));
  $("modality").addEventListener("change", guard(async () => {
    // another file chosen in the list: the modality is for its Open, the shown scan stays
    if (S.scan && $("file-select").value === S.scan.path && (!S.boxes.length || window.confirm("Reopen the scan with this modality? Boxes are kept only in saved files.")))
      await openPath(S.scan.path, $("modality").value);
  }));
  $("model").addEventListener("change", guard(async () => {
    accept(await json("POST", `/api/scans/${S.scan.id}/settings`, { model: $("model").value }));
    await loadOverlay();
  }));
  $("fast").addEventListener("change", guard(async () => {
    const on = $("fast").checked;
    message(on ? "fast mode: compiling the INT8 encoder ..." : "exact mode ...");
    const r = await json("POST", `/api/scans/${S.scan.id}/settings`, { fast: on });
    accept(r); await loadOverlay();
    message((on ? "fast mode on" : "fast mode off") + (r.encoder ? ` (${encoderText(r.encoder)})` : ""), "ok");
  }));
  $("window").addEventListener("change", setWindow);
  $("zoom-in").addEventListener("click", () => zoom(1.25));
  $("zoom-out").addEventListener("click", () => zoom(1 / 1.25));
  $("fit").addEventListener("click", fit);
  $("slider").addEventListener("input", (e) => setSlice(+e.target.value));
  $("undo-btn").addEventListener("click", guard(undo));
  async function undo() { accept(await json("POST", `/api/scans/${S.scan.id}/undo`)); await loadOverlay(); }
  $("cancel-btn").addEventListener("click", guard(() => json("POST", `/api/scans/${S.scan.id}/cancel`)));
  $("save-btn").addEventListener("click", () => save(false));
  $("upload").addEventListener("change", guard(async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    if (f.size > S.info.max_upload_bytes) throw new Error(`${f.name} is larger than the upload limit (${S.info.max_upload_bytes} bytes)`);
    const modality = $("modality").value; // chosen before the upload: it applies to the uploaded scan
    message("uploading " + f.name + " ...");
    const r = await (await api("POST", "/api/upload?name=" + encodeURIComponent(f.name), f, true)).json();
    e.target.value = "";
    await refreshFiles(); await openPath(r.path, modality);
  }));
  window.addEventListener("keydown", guard(async (e) => {
    if (e.target.tagName === "INPUT" || !S.scan) return;
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); await undo(); }
    else if ((e.key === "Delete" || e.key === "Backspace") && S.selected !== null) {
      accept(await json("DELETE", `/api/scans/${S.scan.id}/boxes/${S.selected}`)); S.selected = null; await loadOverlay();
    } else if (e.key === "ArrowUp" || e.key === "ArrowDown") await setSlice(S.z + (e.key === "ArrowUp" ? 1 : -1));
  }));
  window.addEventListener("resize", () => draw());
  guard(init)();
})();
