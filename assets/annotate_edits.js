/* The annotation workspace's edit queue (issue 26): an edit shows on screen at once, and the
 * edits reach the server one at a time, in the order they were made.
 *
 * What the screen shows ahead of the server is a list of pending items: a drawn cell's
 * outline (a plotly shape, dotted), a deleted cell hidden (an SVG mask over the outline
 * overlay), the change of the cell count. Each item is sent to its server callback only when
 * the one before it is answered (Dash keeps only the answer to a callback's latest call, so
 * two edits in flight could lose one's answer, and two requests can land out of order). The
 * server answers with an ack (pages/annotate.py `acked`): kept, with the draft's new state,
 * or refused, with the reason in the message; a refused item is taken off the screen at once.
 * A kept item stays on screen until the overlay image of its revision is shown, so the cell
 * never blinks out between the two.
 *
 * Nothing here decides what is kept: the server checks every edit as before. Undo and Redo
 * show their result from this page's own history of edits when it still matches the draft
 * (no other change of revision since); otherwise they wait for the server's answer. */
(function () {
    "use strict";
    var SVGNS = "http://www.w3.org/2000/svg";
    var MASK_ID = "annotate-hide-mask";
    var ACK_TIMEOUT_MS = 20000;         /* no answer by then: the edit is taken back on screen */
    var SHOWN_TIMEOUT_MS = 5000;        /* a kept item leaves the screen by then at the latest */
    var LATE_KEY_MS = 600;              /* a key waits this long for its button */
    var HOLD_MAX_MS = 150;              /* a Delete/Undo/Redo click reaches Dash by then */
    var AFTER_WAIT_MS = 2000;           /* a held click waits for Dash's state this long at most */
    var TARGET = {draw: "annotate-shape-event", polygon: "annotate-polygon-done",
                  reclass: "annotate-reclass", op: "annotate-edit-send"};
    /* buttons that must see every edit first (saving, leaving, replacing the draft) */
    var AFTER_EDITS = ["annotate-save", "annotate-save-next", "annotate-empty", "annotate-force",
                       "annotate-next", "annotate-skip", "annotate-prev", "annotate-revert",
                       "annotate-suggest", "annotate-reload"];
    var Q = fresh(null);

    function fresh(page) {
        return {page: page, seq: 0, queue: [], inflight: null, items: [], hist: [], redo: [],
                histRev: null, unstored: null, paths: {}, info: null, after: [], timer: null,
                version: 0,
                view: {shapes: [], hides: [], delta: 0, busy: 0, redo: 0}};
    }

    function nu() { return window.dash_clientside.no_update; }

    function setProps(id, props) {
        if (window.dash_clientside && window.dash_clientside.set_props) {
            window.dash_clientside.set_props(id, props);
        }
    }

    function plot() {
        var host = document.getElementById("annotate-graph");
        return host && host.querySelector(".js-plotly-plot");
    }

    function ensure(info) {
        var page = info ? (info.page || info.id) : null;
        if (Q.page !== page) {
            if (Q.timer) { clearTimeout(Q.timer); }
            Q = fresh(page);
        }
        if (info) { Q.info = info; }
    }

    function busy() { return Q.queue.length + (Q.inflight ? 1 : 0); }

    function colour(info, cls) {
        var colours = (info && info.colors) || [];
        return colours[Math.min(cls || 0, colours.length - 1)] || "#ffff00";
    }

    /* ------------------------------------------------------------ shapes and paths */
    function pendingShape(shape, color) {
        var s = {type: shape.type, xref: "x", yref: "y", layer: "above", editable: false,
                 name: "annotate-pending", opacity: 1, fillcolor: "rgba(0,0,0,0)",
                 line: {color: color, width: 2, dash: "dot"}};
        if (shape.type === "path") { s.path = shape.path; } else {
            s.x0 = shape.x0; s.x1 = shape.x1; s.y0 = shape.y0; s.y1 = shape.y1;
        }
        return s;
    }

    function outlinePath(shape) {
        if (!shape) { return null; }
        if (shape.type === "path") { return shape.path || null; }
        var x0 = +shape.x0, x1 = +shape.x1, y0 = +shape.y0, y1 = +shape.y1;
        if ([x0, x1, y0, y1].some(isNaN)) { return null; }
        if (shape.type === "circle") {
            var cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, rx = Math.abs(x1 - x0) / 2,
                ry = Math.abs(y1 - y0) / 2, out = [];
            for (var k = 0; k < 32; k++) {
                var a = 2 * Math.PI * k / 32;
                out.push((cx + rx * Math.cos(a)).toFixed(1) + "," + (cy + ry * Math.sin(a)).toFixed(1));
            }
            return "M" + out.join("L") + "Z";
        }
        return "M" + x0 + "," + y0 + "L" + x1 + "," + y0 + "L" + x1 + "," + y1 + "L" + x0 + "," +
            y1 + "Z";
    }

    function polygonPath(corners) {
        return "M" + corners.map(function (c) {
            return (+c[0]).toFixed(1) + "," + (+c[1]).toFixed(1);
        }).join("L") + "Z";
    }

    /* ------------------------------------------------------------ what the screen shows */
    function view() {
        var cancelled = {}, shapes = [], hides = [], delta = 0;
        Q.items.forEach(function (it) {
            (it.cancels || []).forEach(function (s) { cancelled[s] = true; });
        });
        Q.items.forEach(function (it) {
            if (!it.acked) { delta += it.delta || 0; }
            if (cancelled[it.seq]) { return; }
            if (it.shape) { shapes.push(it.shape); }
            if (it.hide) { hides.push(it.hide); }
        });
        Q.version += 1;
        Q.view = {shapes: shapes, hides: hides, delta: delta, busy: busy(), redo: Q.redo.length,
                  v: Q.version};
        window.requestAnimationFrame(applyMask);
        return Q.view;
    }

    function publish() { setProps("annotate-pending", {data: view()}); }

    function maskElement() {
        var mask = document.getElementById(MASK_ID);
        if (mask) { return mask; }
        var svg = document.createElementNS(SVGNS, "svg");
        svg.setAttribute("width", "0");
        svg.setAttribute("height", "0");
        svg.style.position = "absolute";
        mask = document.createElementNS(SVGNS, "mask");
        mask.setAttribute("id", MASK_ID);
        mask.setAttribute("maskUnits", "objectBoundingBox");
        mask.setAttribute("maskContentUnits", "objectBoundingBox");
        ["x", "y"].forEach(function (k) { mask.setAttribute(k, "0"); });
        ["width", "height"].forEach(function (k) { mask.setAttribute(k, "1"); });
        var all = document.createElementNS(SVGNS, "rect");
        all.setAttribute("width", "1");
        all.setAttribute("height", "1");
        all.setAttribute("fill", "white");
        mask.appendChild(all);
        mask.appendChild(document.createElementNS(SVGNS, "g"));
        svg.appendChild(mask);
        document.body.appendChild(svg);
        return mask;
    }

    /* ------------------------------------------------------------ the overlay's pixels
     * To select a cell at once, the page needs the overlay's pixels: a copy of the overlay on
     * screen is fetched once the user has paused on it with the Select tool (draft.png is
     * not cacheable, so this asks the server to draw it a second time, only then). */
    var PIX = {address: null, fetching: null, data: null, w: 0, h: 0, timer: null};

    function overlayAddress(src) {
        return src && src.indexOf("/draft.png") >= 0 ? src : null;
    }

    function onScreen() {
        var gd = plot(), el = gd && overlayImage(gd);
        return el ? overlayAddress(el._imgSrc) : null;
    }

    function prefetch(delay, tries) {
        clearTimeout(PIX.timer);
        PIX.timer = setTimeout(function () {
            var address = onScreen();
            if (!address && (tries || 0) < 20) { prefetch(300, (tries || 0) + 1); return; }
            if (!address || address === PIX.address || address === PIX.fetching ||
                    selectedTool() !== "select" || busy() || !window.createImageBitmap) {
                return;
            }
            PIX.fetching = address;
            fetch(address, {credentials: "same-origin"}).then(function (r) {
                if (!r.ok) { throw new Error("overlay " + r.status); }
                return r.blob();
            }).then(createImageBitmap).then(function (bitmap) {
                if (PIX.fetching !== address) { return; }
                var canvas = document.createElement("canvas");
                canvas.width = bitmap.width;
                canvas.height = bitmap.height;
                var ctx = canvas.getContext("2d", {willReadFrequently: true});
                ctx.drawImage(bitmap, 0, 0);
                PIX.data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
                PIX.w = bitmap.width;
                PIX.h = bitmap.height;
                PIX.address = address;
                PIX.fetching = null;
            }).catch(function () { PIX.fetching = null; });
        }, delay);
    }

    /* The cell under image point (x, y) as the overlay draws it (same colour, bounded by
     * its outline): painted highlighted at once; the server's answer selects it. */
    function selectAt(x, y) {
        var info = Q.info, gd = plot();
        if (!info || !gd || selectedTool() !== "select") { return; }
        if (!PIX.data || PIX.address !== onScreen()) { prefetch(250); return; }
        var sx = PIX.w / info.width, sy = PIX.h / info.height;
        var px = Math.floor(x * sx), py = Math.floor(y * sy), w = PIX.w, h = PIX.h, d = PIX.data;
        if (px < 0 || py < 0 || px >= w || py >= h) { return; }
        var at = (py * w + px) * 4, alpha = d[at + 3];
        if (alpha === 0 || alpha === 255) { return; }          /* background, or an outline */
        var r = d[at], g = d[at + 1], b = d[at + 2], limit = 250000;
        var seen = new Uint8Array(w * h), stack = [py * w + px], cells = [];
        var x0 = px, x1 = px, y0 = py, y1 = py;
        seen[py * w + px] = 1;
        while (stack.length) {
            var k = stack.pop(), kx = k % w, ky = (k - kx) / w;
            cells.push(k);
            if (cells.length > limit) { return; }
            if (kx < x0) { x0 = kx; } if (kx > x1) { x1 = kx; }
            if (ky < y0) { y0 = ky; } if (ky > y1) { y1 = ky; }
            var around = [kx > 0 ? k - 1 : -1, kx < w - 1 ? k + 1 : -1,
                          ky > 0 ? k - w : -1, ky < h - 1 ? k + w : -1];
            for (var i = 0; i < 4; i++) {
                var n = around[i];
                if (n < 0 || seen[n]) { continue; }
                var o = n * 4;
                if (d[o] === r && d[o + 1] === g && d[o + 2] === b && d[o + 3] === alpha) {
                    seen[n] = 1;
                    stack.push(n);
                }
            }
        }
        var bw = x1 - x0 + 3, bh = y1 - y0 + 3;          /* one pixel more each side */
        var canvas = document.createElement("canvas");
        canvas.width = bw;
        canvas.height = bh;
        var ctx = canvas.getContext("2d"), img = ctx.createImageData(bw, bh);
        cells.forEach(function (k) {
            var kx = k % w, ky = (k - kx) / w, o = ((ky - y0 + 1) * bw + (kx - x0 + 1)) * 4;
            img.data[o] = 255; img.data[o + 1] = 255; img.data[o + 2] = 255; img.data[o + 3] = 150;
        });
        ctx.putImageData(img, 0, 0);
        var layer = fastLayer(gd);
        if (!layer) { return; }
        while (layer.firstChild) { layer.removeChild(layer.firstChild); }
        var el = document.createElementNS(SVGNS, "image");
        el.setAttribute("class", "annotate-fast-selected");
        el.setAttribute("href", canvas.toDataURL());
        el.setAttribute("x", (x0 - 1) / sx);
        el.setAttribute("y", (y0 - 1) / sy);
        el.setAttribute("width", bw / sx);
        el.setAttribute("height", bh / sy);
        el.setAttribute("preserveAspectRatio", "none");
        layer.appendChild(el);
        Q.painted = performance.now();
    }

    function overlayImage(gd) {
        var images = gd.querySelectorAll("image");
        for (var i = 0; i < images.length; i++) {
            if (overlayAddress(images[i]._imgSrc)) { return images[i]; }
        }
        return images.length > 1 ? images[1] : null;
    }

    /* Hide the pending deleted cells in the outline overlay (a mask in the image's own
     * coordinates: the mask's units are the image element's box). */
    function applyMask() {
        var gd = plot(), el = gd && overlayImage(gd);
        if (!el) { return; }
        var hides = Q.view.hides || [];
        if (!hides.length || !Q.info) {
            if (el.hasAttribute("mask")) { el.removeAttribute("mask"); }
            return;
        }
        var g = maskElement().querySelector("g");
        g.setAttribute("transform", "scale(" + (1 / Q.info.width) + "," + (1 / Q.info.height) + ")");
        while (g.firstChild) { g.removeChild(g.firstChild); }
        hides.forEach(function (d) {
            var p = document.createElementNS(SVGNS, "path");
            p.setAttribute("d", d);
            p.setAttribute("fill", "black");
            p.setAttribute("stroke", "black");
            p.setAttribute("stroke-width", "4");
            g.appendChild(p);
        });
        if (el.getAttribute("mask") !== "url(#" + MASK_ID + ")") {
            el.setAttribute("mask", "url(#" + MASK_ID + ")");
        }
    }

    /* The overlay image of revision `src` is on screen: the kept items it includes leave. */
    function shown(src) {
        var m = /[?&]rev=([^&]*)/.exec(src || "");
        if (!m) { return; }
        var rev = parseInt(m[1], 10), all = String(parseInt(m[1], 10)) !== m[1];
        var before = Q.items.length;
        Q.items = Q.items.filter(function (it) {
            return !(it.acked && (all || (typeof it.rev === "number" && it.rev <= rev)));
        });
        if (Q.items.length !== before) { publish(); }
    }

    /* The overlay image element of the draft: plotly sets its address, the browser loads
     * it; when an overlay has loaded, the kept items it includes leave the screen. */
    function watch() {
        var gd = plot();
        if (!gd) {                         /* the figure is not drawn yet: look again */
            if (document.getElementById("annotate-graph")) { setTimeout(watch, 200); }
            return;
        }
        if (gd.__cellloopWatched) { return; }
        gd.__cellloopWatched = true;
        prefetch(500);
        gd.addEventListener("load", function (ev) {
            var el = ev.target;
            var address = el && el.tagName === "image" && overlayAddress(el._imgSrc);
            if (address) { shown(address); prefetch(300); }
        }, true);
        if (gd.on) {
            gd.on("plotly_afterplot", function () {
                unpaint();
                applyMask();
            });
            gd.on("plotly_relayout", fastRelayout);
        }
    }

    /* ------------------------------------------------------------ the queue */
    function drop(it) { Q.items = Q.items.filter(function (x) { return x !== it; }); }

    /* The page's history matches the draft only while nothing else changed its revision. */
    function validate(st) {
        if (!busy() && Q.histRev !== (st && st.rev)) {
            Q.hist = [];
            Q.redo = [];
            Q.histRev = st && st.rev;
        }
    }

    function make(kind, fields) {
        var it = Object.assign({kind: kind, delta: 0}, fields || {});
        it.seq = (Q.seq += 1);
        return it;
    }

    function submit(it, target, payload) {
        it.target = target;
        it.payload = Object.assign({}, payload, {seq: it.seq});
        it.t = touched = performance.now();
        Q.items.push(it);
        Q.queue.push(it);
        if (it.hist) {                     /* a new edit: what Undo would take back */
            Q.hist.push(Object.assign({seq: it.seq}, it.hist));
            Q.redo = [];
        }
        pump();
        return view();
    }

    function pump() {
        if (Q.inflight || !Q.queue.length) { return; }
        var it = Q.queue.shift();
        Q.inflight = it;
        it.sentAt = performance.now();
        Q.timer = setTimeout(function () { timedOut(it); }, ACK_TIMEOUT_MS);
        setProps(it.target, {data: it.payload});
    }

    /* edits on their way, or the last answer not yet in Dash's state */
    function held() { return busy() > 0 || Q.unstored !== null; }

    function drained() {
        if (busy() || !Q.after.length) { return; }
        var ids = Q.after, until = performance.now() + AFTER_WAIT_MS;
        Q.after = [];
        /* the buttons' callbacks read the page's state: click once Dash has stored the last
           answer's (a suggestion clicked right after drawing saw no cell, and did not ask) */
        function fire() {
            if (Q.unstored !== null && performance.now() < until) {
                setTimeout(fire, 16);
                return;
            }
            Q.unstored = null;
            ids.forEach(function (id) {
                var el = document.getElementById(id);
                if (el && !el.disabled) { el.click(); }
            });
        }
        setTimeout(fire, 0);
    }

    function forget() { Q.hist = []; Q.redo = []; Q.histRev = null; }

    function timedOut(it) {
        if (Q.inflight !== it) { return; }
        Q.inflight = null;
        drop(it);
        forget();
        setProps("annotate-message", {children: "The server did not answer an edit within " +
            (ACK_TIMEOUT_MS / 1000) + " s, so it is not shown as kept. Reload the page to see " +
            "your draft as the server has it."});
        pump();
        publish();
        drained();
    }

    function ack(a, st) {
        if (!a || !Q.inflight || a.seq !== Q.inflight.seq) { return [nu(), nu()]; }
        var it = Q.inflight, out = nu();
        Q.inflight = null;
        clearTimeout(Q.timer);
        it.answeredAt = performance.now();
        if (a.ok && a.state) {
            var server = Object.assign({}, a.state);
            delete server.polygon;                 /* the corners being clicked are the page's */
            if (Q.queue.length) {                  /* later edits decide the selection */
                delete server.selected; delete server.selected_cls; delete server.path;
            } else if (it.kind === "add" && server.selected && it.hist && it.hist.path) {
                Q.paths[server.selected] = it.hist.path;
            }
            out = Object.assign({}, st, server);
            it.acked = true;
            it.rev = a.state.rev;
            Q.histRev = a.state.rev;
            Q.unstored = a.state.rev;
            if (it.shape || it.hide) {
                setTimeout(function () { if (Q.items.indexOf(it) >= 0) { drop(it); publish(); } },
                           SHOWN_TIMEOUT_MS);
            } else { drop(it); }
        } else {
            drop(it);                              /* refused, failed or no edit at all */
            if (!a.ok) {
                forget();
                if (it.rollback && st && st.selected === it.rollback.selected) {
                    out = Object.assign({}, st, it.rollback);
                }
            }
        }
        window.CellLoopEdits.last = {seq: it.seq, kind: it.kind, ok: !!a.ok,
                                     sent: it.sentAt - it.t, answered: it.answeredAt - it.t};
        pump();
        var v = view();
        drained();
        return [out, v];
    }

    /* ------------------------------------------------------------ the edits */
    function relayout(r, tool, cls, brush, st, info) {
        if (!r || !st) { return [nu(), nu()]; }
        var keys = Object.keys(r).filter(function (k) { return k.indexOf("shapes") === 0; });
        if (!keys.length) { return [nu(), nu()]; }
        ensure(info);
        validate(st);
        var reshaped = keys.filter(function (k) { return k.indexOf("shapes[0].path") === 0; });
        var it, payload;
        /* what the edit means is fixed when it is drawn: the tool, class, brush and selected
           cell of that moment travel with it (the queue may send it seconds later) */
        var ctx = {tool: tool, cls: cls || 0, brush: brush, selected: st.selected || 0,
                   path: st.path || null};
        if (reshaped.length && st.path && st.selected) {
            payload = {_ctx: ctx};
            payload[reshaped[0]] = r[reshaped[0]];
            it = make("reshape", {hist: {kind: "other"},
                                  shape: pendingShape({type: "path", path: r[reshaped[0]]},
                                                      "#ffffff")});
            return [Object.assign({}, st, {path: r[reshaped[0]]}), submit(it, TARGET.draw, payload)];
        }
        if (!Array.isArray(r.shapes) || !r.shapes.length) { return [nu(), nu()]; }
        var shape = r.shapes[r.shapes.length - 1];
        payload = {shapes: [shape], _ctx: ctx};
        if (["draw", "rect", "ellipse"].indexOf(tool) >= 0) {
            var s = (tool === "ellipse" && shape.type === "rect")
                ? Object.assign({}, shape, {type: "circle"}) : shape;
            var preview = pendingShape(s, colour(info, cls));
            it = make("add", {delta: 1, shape: preview,
                              hist: {kind: "add", shape: preview, path: outlinePath(s)}});
        } else if (["brush", "erase", "region"].indexOf(tool) >= 0) {
            it = make(tool, {hist: {kind: "other"}, shape: Object.assign({}, shape, {
                name: "annotate-pending", editable: false})});
        } else {
            return [nu(), nu()];
        }
        return [nu(), submit(it, TARGET.draw, payload)];
    }

    function polygon(corners, cls, st, info) {
        ensure(info);
        validate(st);
        corners = corners || [];
        var it;
        if (corners.length >= 3) {
            var path = polygonPath(corners);
            var preview = pendingShape({type: "path", path: path}, colour(info, cls));
            it = make("add", {delta: 1, shape: preview,
                              hist: {kind: "add", shape: preview, path: path}});
        } else {
            it = make("add");                      /* the server says why it is no cell */
        }
        var v = submit(it, TARGET.polygon, {corners: corners, t: Date.now(), cls: cls || 0});
        return [Object.assign({}, st, {polygon: null}), v];
    }

    function op(kind, st, info) {
        ensure(info);
        validate(st);
        st = st || {};
        var it, out = nu(), payload = {kind: kind, t: Date.now()};
        if (kind === "delete") {
            var path = st.path || Q.paths[st.selected] || null;
            it = make(kind, {delta: st.selected ? -1 : 0, hide: path,
                             hist: {kind: "delete", path: path, cls: st.selected_cls || 0},
                             rollback: {selected: st.selected, selected_cls: st.selected_cls,
                                        path: st.path}});
            payload.label = st.selected || 0;
            if (st.selected) {
                out = Object.assign({}, st, {selected: 0, selected_cls: 0, path: null});
                it.rollback.selected = 0;
            }
        } else if (kind === "undo") {
            it = make(kind);
            var top = Q.hist.pop();
            if (top) {
                it.cancels = [top.seq];
                if (top.kind === "add") { it.hide = top.path; it.delta = -1; }
                if (top.kind === "delete") {
                    it.delta = 1;
                    it.shape = top.path ? pendingShape({type: "path", path: top.path},
                                                       colour(info, top.cls)) : null;
                }
                top.undoSeq = it.seq;
                Q.redo.push(top);
            }
            out = Object.assign({}, st, {selected: 0, selected_cls: 0, path: null});
        } else if (kind === "redo") {
            it = make(kind);
            var again = Q.redo.pop();
            if (again) {
                it.cancels = [again.undoSeq];
                if (again.kind === "add") { it.shape = again.shape; it.delta = 1; }
                if (again.kind === "delete") { it.hide = again.path; it.delta = -1; }
                Q.hist.push(Object.assign({}, again, {seq: it.seq}));
            }
            out = Object.assign({}, st, {selected: 0, selected_cls: 0, path: null});
        } else if (kind === "clear") {
            var w = (info && info.width) || 0, h = (info && info.height) || 0;
            it = make(kind, {delta: -((st.n_cells || 0) + Q.view.delta),
                             hide: "M0,0L" + w + ",0L" + w + "," + h + "L0," + h + "Z",
                             hist: {kind: "other"}});
        } else {
            it = make(kind, {hist: {kind: "other"}});
        }
        var v = submit(it, TARGET.op, payload);
        return [out, v];
    }

    function reclass(ask, st, info) {
        if (!ask || !st) { return [nu(), nu()]; }
        ensure(info);
        validate(st);
        /* the cell's outline in its new class's colour until the overlay shows it */
        var path = st.selected ? (st.path || Q.paths[st.selected] || null) : null;
        var it = make("class", {hist: {kind: "other"},
                                shape: path ? pendingShape({type: "path", path: path},
                                                           colour(info, ask.cls)) : null,
                                rollback: {selected: st.selected, selected_cls: st.selected_cls}});
        var v = submit(it, TARGET.reclass, {cls: ask.cls, t: ask.t, label: st.selected || 0});
        return [st.selected ? Object.assign({}, st, {selected_cls: ask.cls}) : nu(), v];
    }

    /* ------------------------------------------------------------ drawing the page */
    function draftUrl(id, rev, selected, side) {
        return "/api/images/" + id + "/draft.png?rev=" + (rev || 0) + "&selected=" +
            (selected || 0) + "&size=" + side;
    }

    function selectedShape(path) {
        return path ? [{type: "path", path: path, editable: true, layer: "above",
                        line: {color: "#ffffff", width: 2},
                        fillcolor: "rgba(255,255,255,0.05)"}] : [];
    }

    function polygonPreview(corners) {
        if (!corners || !corners.length) { return []; }
        var pts = corners.length > 1 ? corners : corners.concat(corners);
        return [{type: "path", editable: false, layer: "above",
                 path: "M" + pts.map(function (c) {
                     return (+c[0]).toFixed(1) + "," + (+c[1]).toFixed(1);
                 }).join("L"),
                 line: {color: "#00e5ff", width: 2, dash: "dot"}}];
    }

    function render(st, pending, opacity, info, fig) {
        if (!fig || !fig.layout || !st || !info) { return nu(); }
        ensure(info);
        var side = Math.min(2048, Math.max(info.width, info.height));
        var layout = Object.assign({}, fig.layout);
        var images = (layout.images || []).slice();
        if (images.length > 1) {
            images[1] = Object.assign({}, images[1], {
                source: draftUrl(info.id, st.rev, info.can_edit ? 0 : st.selected, side),
                opacity: opacity === undefined || opacity === null ? images[1].opacity : opacity});
        }
        layout.images = images;
        layout.shapes = selectedShape(st.path).concat(polygonPreview(st.polygon),
                                                       (pending && pending.shapes) || []);
        Q.rendered = performance.now();
        window.requestAnimationFrame(function () { watch(); applyMask(); });
        return Object.assign({}, fig, {layout: layout});
    }

    function counts(st, pending, info) {
        st = st || {};
        ensure(info);
        Q.lastSt = st;
        if (Q.unstored !== null && st.rev === Q.unstored) { Q.unstored = null; }
        window.requestAnimationFrame(watch);
        var p = pending || {}, ro = !(info && info.can_edit), parts = [];
        if (st.n_cells !== null && st.n_cells !== undefined) {
            var n = Math.max(0, st.n_cells + (p.delta || 0));
            /* a counting image says its points; "0 cells" there is noise */
            if (n || !(info && info.counting)) { parts.push(n + (n === 1 ? " cell" : " cells")); }
        }
        var np = st.n_points || 0;
        if (np || (info && info.counting)) { parts.push(np + (np === 1 ? " point" : " points")); }
        if (st.selected) {
            var names = (info && info.classes) || [], cls = st.selected_cls || 0;
            var name = cls >= 0 && cls < names.length ? names[cls] : "class " + (cls + 1);
            parts.push("cell " + st.selected + " selected (" + name + ")");
        }
        if (p.busy) { parts.push("saving " + p.busy + (p.busy === 1 ? " edit" : " edits") + "…"); }
        var text = parts.join(" · ");
        if (window.Promise) {          /* the text painted ahead (fast) never outlives this one */
            Promise.resolve().then(function () { countsText(text); });
        }
        return [text, ro || !(st.can_undo || p.busy), ro || !(st.can_redo || p.redo),
                ro || !st.selected];
    }

    /* ------------------------------------------------------------ painted at once
     * Dash takes a few frames from an input to its callbacks' outputs (more on a busy
     * machine). The direct part of an edit (count, hidden cell, outline) is painted in the
     * same event, from the same rules as the queue's view, and the next drawing of the page
     * from Dash's state (the same result) replaces it. */
    function countsText(text) {
        var el = document.getElementById("annotate-counts");
        if (!el) { return; }
        if (el.childNodes.length === 1 && el.firstChild.nodeType === 3) {
            if (el.firstChild.nodeValue !== text) { el.firstChild.nodeValue = text; }
        } else if (!el.childNodes.length) {
            el.appendChild(document.createTextNode(text));
        }
    }

    function fastLayer(gd) {
        var el = overlayImage(gd);
        if (!el || !Q.info) { return null; }
        /* beside plotly's image layer, not in it: plotly binds its layout images to every
         * <image> in that layer (ours there broke its drawing) */
        var host = el.parentNode.parentNode || el.parentNode;
        var g = host.querySelector(":scope > g.annotate-fast");
        if (!g) {
            g = document.createElementNS(SVGNS, "g");
            g.setAttribute("class", "annotate-fast");
            g.style.pointerEvents = "none";
            host.appendChild(g);
        }
        var x = +el.getAttribute("x") || 0, y = +el.getAttribute("y") || 0;
        var w = +el.getAttribute("width") || 1, h = +el.getAttribute("height") || 1;
        g.setAttribute("transform", "translate(" + x + "," + y + ") scale(" + (w / Q.info.width) +
                       "," + (h / Q.info.height) + ")");
        return g;
    }

    function paint(delta, hide, outline, color) {
        var gd = plot();
        if (!gd || !Q.info || !Q.lastSt) { return; }
        var v = Object.assign({}, Q.view, {delta: (Q.view.delta || 0) + delta,
                                           busy: (Q.view.busy || 0) + 1});
        if (hide) {
            v.hides = (Q.view.hides || []).concat([hide]);
            Q.view = Object.assign({}, Q.view, {hides: v.hides});
            applyMask();
        }
        if (outline) {
            var g = fastLayer(gd);
            if (g) {
                var p = document.createElementNS(SVGNS, "path");
                p.setAttribute("d", outline);
                p.setAttribute("fill", "none");
                p.setAttribute("stroke", color || "#ffff00");
                p.setAttribute("stroke-width", "2");
                p.setAttribute("stroke-dasharray", "3,3");
                p.setAttribute("vector-effect", "non-scaling-stroke");
                g.appendChild(p);
            }
        }
        Q.painted = performance.now();
        countsText(counts(Q.lastSt, v, Q.info)[0]);
    }

    /* Once Dash has drawn the page again (after the painted event), the painted parts go. */
    function unpaint() {
        if (!Q.painted || !Q.rendered || Q.rendered < Q.painted) { return; }
        var gd = plot(), g = gd && gd.querySelector("g.annotate-fast");
        if (g) { while (g.firstChild) { g.removeChild(g.firstChild); } }
        Q.painted = null;
    }

    function selectedTool() {
        var checked = document.querySelector("#annotate-tool input:checked");
        return checked ? checked.value : "";
    }

    /* A cell drawn with plotly's shape tools: plotly has drawn its outline; count it now. */
    function fastRelayout(r) {
        if (!r || !Array.isArray(r.shapes) || !r.shapes.length || !Q.info || !Q.info.can_edit) {
            return;
        }
        if (["draw", "rect", "ellipse"].indexOf(selectedTool()) >= 0) { paint(1); }
    }

    /* Delete, Undo, Redo (keys or buttons): what the queue will show, painted now. */
    function fast(kind) {
        var st = Q.lastSt, info = Q.info;
        if (!st || !info || !info.can_edit || (Q.page !== (info.page || info.id))) { return; }
        if (kind === "delete") {
            if (!st.selected) { return; }
            var gd = plot(), shape = gd && gd.querySelector(".shapelayer path[data-index='0']");
            if (shape && st.path) { shape.style.visibility = "hidden"; }
            paint(-1, st.path || Q.paths[st.selected] || null);
            return;
        }
        if (busy() === 0 && Q.histRev !== st.rev) { return; }   /* history unknown: wait */
        var top = kind === "undo" ? Q.hist[Q.hist.length - 1] : Q.redo[Q.redo.length - 1];
        if (!top) { return; }
        var adds = (top.kind === "add") === (kind === "undo") ? -1 : 1;
        if (adds < 0) { paint(-1, top.path); } else {
            paint(1, null, top.path, top.shape ? top.shape.line.color : colour(info, top.cls));
        }
    }

    /* The click reaches Dash (its callbacks, the figure redrawn, the request) only once the
     * browser has shown the painted edit: two frames later. Dash's work in between held the
     * frame that shows it by 30-60 ms. Clicks keep their order: a later one first lets the
     * held ones through. */
    var heldClicks = [], replaying = false;

    function release() {
        var els = heldClicks;
        heldClicks = [];
        replaying = true;
        try {
            els.forEach(function (el) { if (!el.disabled) { el.click(); } });
        } finally { replaying = false; }
    }

    /* A key for a button Dash has not enabled yet, pressed while the page catches up with an
     * edit made a moment ago (Redo right after Undo: the Redo button is enabled only once
     * Dash has the Undo), waits for the button, in the order the keys came, LATE_KEY_MS at
     * most. Before, such a key was dropped. */
    var lateKeys = [], touched = -1e9;

    function catchingUp() {
        return heldClicks.length > 0 || busy() > 0 || performance.now() - touched < LATE_KEY_MS;
    }

    function press(id) {
        var el = document.getElementById(id);
        if (!el) { return false; }
        if (!el.disabled && !lateKeys.length) { el.click(); return true; }
        if (!lateKeys.length && !catchingUp()) { return false; }   /* disabled for real */
        lateKeys.push({id: id, until: performance.now() + LATE_KEY_MS});
        if (lateKeys.length === 1) { setTimeout(pressLate, 0); }
        return true;
    }

    function pressLate() {
        if (heldClicks.length) { release(); }
        while (lateKeys.length) {
            var k = lateKeys[0], el = document.getElementById(k.id);
            if (el && !el.disabled) {
                lateKeys.shift();
                el.click();
            } else if (!el || performance.now() > k.until) {
                lateKeys.shift();
            } else {
                setTimeout(pressLate, 16);
                return;
            }
        }
    }

    document.addEventListener("click", function (ev) {
        if (replaying) { return; }
        var el = ev.target && ev.target.closest ? ev.target.closest("button") : null;
        if (!el || el.disabled) { return; }
        var kind = {"annotate-delete": "delete", "annotate-undo": "undo",
                    "annotate-redo": "redo"}[el.id];
        if (!kind) { return; }
        if (heldClicks.length) { release(); }
        touched = performance.now();
        fast(kind);
        ev.preventDefault();
        ev.stopImmediatePropagation();
        heldClicks.push(el);
        window.requestAnimationFrame(function () {
            window.requestAnimationFrame(function () { setTimeout(release, 0); });
        });
        setTimeout(release, HOLD_MAX_MS);           /* no frames in a hidden tab */
    }, true);

    /* Saving, leaving or replacing the draft waits for the edits still on their way. */
    document.addEventListener("click", function (ev) {
        var el = ev.target && ev.target.closest ? ev.target.closest("button") : null;
        if (!el || AFTER_EDITS.indexOf(el.id) < 0 || !held()) { return; }
        ev.preventDefault();
        ev.stopImmediatePropagation();
        if (Q.after.indexOf(el.id) < 0) { Q.after.push(el.id); }
        drained();                      /* nothing on its way: only Dash's state to wait for */
    }, true);
    /* The Select tool chosen (key or button): have the overlay's pixels ready for a click. */
    document.addEventListener("keydown", function (ev) {
        if ((ev.key || "").toLowerCase() === "s" && !ev.ctrlKey && !ev.metaKey) { prefetch(400); }
    }, true);
    document.addEventListener("change", function (ev) {
        if (ev.target && ev.target.closest && ev.target.closest("#annotate-tool")) { prefetch(400); }
    }, true);
    window.addEventListener("beforeunload", function (ev) {
        if (busy()) { ev.preventDefault(); ev.returnValue = ""; }
    });

    window.CellLoopEdits = {op: op, polygon: polygon, reclass: reclass, busy: busy,
                            selectAt: selectAt, press: press,
                            state: function () { return Q; }};
    window.dash_clientside = window.dash_clientside || {};
    window.dash_clientside.cellloop_annotate = {render: render, counts: counts,
                                                relayout: relayout, ack: ack};
}());
