/* Annotation workspace: clicks on the image in data coordinates, keyboard shortcuts, and the
 * ellipse tool's preview.
 *
 * Plotly reports clicks only on trace points, not on a layout image, so a click (press and
 * release without moving) inside the plot area is converted to image coordinates with the
 * axes' pixel-to-data functions and handed to Dash through set_props. */
(function () {
    "use strict";
    var TOOL_KEYS = {s: "select", d: "draw", l: "polygon", r: "rect", o: "ellipse", b: "brush",
                     e: "erase", g: "region", p: "point", z: "zoom"};
    var down = null;

    function plot() {
        var host = document.getElementById("annotate-graph");
        return host && host.querySelector(".js-plotly-plot");
    }

    function setProps(id, props) {
        if (window.dash_clientside && window.dash_clientside.set_props) {
            window.dash_clientside.set_props(id, props);
        }
    }

    function click(id) {
        var el = document.getElementById(id);
        if (el && !el.disabled) { el.click(); return true; }
        return false;
    }

    /* Undo, Redo, Delete keys: through the edit queue, which lets a key wait for a button
     * that Dash has not enabled yet (Redo pressed right after Undo). */
    function edit(id) {
        var E = window.CellLoopEdits;
        return E && E.press ? E.press(id) : click(id);
    }

    document.addEventListener("mousedown", function (ev) {
        var gd = plot();
        down = null;
        if (!gd || !gd.contains(ev.target) || ev.button !== 0) { return; }
        if (ev.target.closest && ev.target.closest(".modebar")) { return; }
        down = {x: ev.clientX, y: ev.clientY, t: Date.now()};
    }, true);

    document.addEventListener("mouseup", function (ev) {
        var start = down;
        down = null;
        if (!start) { return; }
        if (Math.abs(ev.clientX - start.x) > 4 || Math.abs(ev.clientY - start.y) > 4 ||
                Date.now() - start.t > 800) { return; }
        var gd = plot();
        var area = gd && gd.querySelector(".nsewdrag");
        if (!area || !gd._fullLayout) { return; }
        var r = area.getBoundingClientRect();
        if (ev.clientX < r.left || ev.clientX > r.right || ev.clientY < r.top ||
                ev.clientY > r.bottom) { return; }
        var fl = gd._fullLayout;
        var x = fl.xaxis.p2d(ev.clientX - r.left), y = fl.yaxis.p2d(ev.clientY - r.top);
        if (window.CellLoopEdits) { window.CellLoopEdits.selectAt(x, y); }  /* shown at once */
        setProps("annotate-click", {data: {x: x, y: y, t: Date.now()}});
    }, true);

    /* A tool, class or button the page offers this user: present and not disabled (a viewer's
     * edit tools are disabled, a counting project has no outline tools; their keys do nothing). */
    function offered(selector) {
        var el = document.querySelector(selector);
        return !!el && !el.disabled;
    }

    function digit(ev) {
        var m = /^(?:Digit|Numpad)([1-9])$/.exec(ev.code || "");
        if (m) { return parseInt(m[1], 10) - 1; }
        return /^[1-9]$/.test(ev.key || "") ? parseInt(ev.key, 10) - 1 : -1;
    }

    document.addEventListener("keydown", function (ev) {
        if (!document.getElementById("annotate-graph")) { return; }
        var t = ev.target, tag = (t.tagName || "").toLowerCase();
        var typing = tag === "textarea" || t.isContentEditable ||
            (tag === "input" && ["radio", "checkbox", "button"].indexOf(t.type) < 0);
        var key = (ev.key || "").toLowerCase();
        var ctrl = ev.ctrlKey || ev.metaKey;
        if (ctrl && key === "s") { ev.preventDefault(); click("annotate-save"); return; }
        if (typing) { return; }
        if (ctrl && (key === "y" || (key === "z" && ev.shiftKey))) {
            ev.preventDefault(); edit("annotate-redo"); return;
        }
        if (ctrl && key === "z") { ev.preventDefault(); edit("annotate-undo"); return; }
        if (ctrl || ev.altKey) { return; }
        var n = digit(ev);
        if (n >= 0) {
            if (!offered("#annotate-class input[value='" + n + "']")) { return; }
            if (ev.shiftKey) {          /* explicit: set the selected cell's class */
                if (offered("#annotate-set-class")) {
                    setProps("annotate-reclass-ask", {data: {cls: n, t: Date.now()}});
                }
            } else {                    /* the class of the next cell drawn */
                setProps("annotate-class", {value: n});
            }
            return;
        }
        if (TOOL_KEYS[key] && !ev.shiftKey) {
            if (offered("#annotate-tool input[value='" + TOOL_KEYS[key] + "']")) {
                setProps("annotate-tool", {value: TOOL_KEYS[key]});
            }
            return;
        }
        if (key === "delete" || key === "backspace") {
            if (edit("annotate-delete")) { ev.preventDefault(); }
            return;
        }
        if (key === "escape") { click("annotate-deselect"); return; }
        if (key === "enter") { click("annotate-close-polygon"); return; }
        if (key === "n") { click("annotate-save-next"); return; }
        if (key === "u") { click("annotate-next-uncertain"); return; }
        if (key === "k") { click("annotate-keep-cell"); return; }
        if (key === "[") { click("annotate-brush-down"); return; }
        if (key === "]") { click("annotate-brush-up"); return; }
    });

    /* Ellipse tool: plotly drags a box (drawrect, corner to corner like the rectangle); while
     * it does, draw the ellipse inscribed in that box, which is what the server will fill. */
    var SVGNS = "http://www.w3.org/2000/svg";

    function ellipseTool() {
        var checked = document.querySelector("#annotate-tool input:checked");
        return !!checked && checked.value === "ellipse";
    }

    function drawEllipsePreview() {
        var gd = plot();
        var box = gd && gd.querySelector("path.select-outline");
        var old = gd && gd.querySelector("ellipse.annotate-ellipse-preview");
        if (!box || !ellipseTool()) { if (old) { old.remove(); } return; }
        var b = box.getBBox();
        var e = old || document.createElementNS(SVGNS, "ellipse");
        e.setAttribute("class", "annotate-ellipse-preview");
        e.setAttribute("transform", box.getAttribute("transform") || "");
        e.setAttribute("cx", b.x + b.width / 2);
        e.setAttribute("cy", b.y + b.height / 2);
        e.setAttribute("rx", b.width / 2);
        e.setAttribute("ry", b.height / 2);
        e.style.fill = "none";
        e.style.stroke = box.style.stroke || "#ffff00";
        e.style.strokeWidth = "2px";
        e.style.pointerEvents = "none";
        if (!old) { box.parentNode.appendChild(e); }
    }

    document.addEventListener("mousemove", function () {
        if (down && ellipseTool()) { window.requestAnimationFrame(drawEllipsePreview); }
    }, true);
    document.addEventListener("mouseup", function () {
        window.requestAnimationFrame(function () {
            var old = document.querySelector("ellipse.annotate-ellipse-preview");
            if (old) { old.remove(); }
        });
    }, true);
}());
