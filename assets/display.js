/* Image display in the viewer and the annotation workspace: the raw pixel values under the
 * cursor, and nearest-neighbour pixels when zoomed in.
 *
 * Each page has an element `.pixel-readout[data-graph=<graph id>]`. The image on screen is
 * the figure's first layout image (/api/images/<id>/render.jpg?z=..&size=..), whose axes are
 * in full-resolution pixels, so the cursor's data coordinates are the pixel to ask about
 * even when the picture is downsampled. Requests are throttled: one in flight at a time,
 * and only the newest position is asked next; answers are kept for the page's life. */
(function () {
    "use strict";
    var cache = {};
    var busy = false, pending = null;

    function plotOf(readout) {
        var host = document.getElementById(readout.getAttribute("data-graph"));
        return host && host.querySelector(".js-plotly-plot");
    }

    function source(gd) {
        var images = gd && gd.layout && gd.layout.images;
        var src = images && images[0] && images[0].source;
        var m = src && /\/api\/images\/(\d+)\/render\.\w+\?(.*)$/.exec(src);
        if (!m) { return null; }
        var params = new URLSearchParams(m[2]);
        return {id: m[1], z: parseInt(params.get("z") || "0", 10),
                size: parseInt(params.get("size") || "0", 10),
                width: images[0].sizex, height: images[0].sizey};
    }

    function show(readout, text) {
        if (readout.textContent !== text) { readout.textContent = text; }
    }

    function describe(answer) {
        var parts = ["x " + answer.x + " y " + answer.y];
        answer.values.forEach(function (v, i) {
            var name = answer.channels[i] || ("channel " + (i + 1));
            parts.push(name + " " + (v === null ? "–" : v));
        });
        return parts.join(" · ");
    }

    function ask(job) {
        var key = job.url;
        if (cache[key] !== undefined) { show(job.readout, cache[key]); return; }
        if (busy) { pending = job; return; }
        busy = true;
        fetch(job.url, {credentials: "same-origin"})
            .then(function (r) { return r.ok ? r.json() : null; })
            .then(function (answer) {
                if (answer) { cache[key] = describe(answer); }
                if (answer && (!pending || pending.readout !== job.readout)) {
                    show(job.readout, cache[key]);
                }
            })
            .catch(function () { return null; })
            .then(function () {
                busy = false;
                var next = pending;
                pending = null;
                if (next) { ask(next); }
            });
    }

    document.addEventListener("mousemove", function (ev) {
        var readouts = document.querySelectorAll(".pixel-readout[data-graph]");
        Array.prototype.forEach.call(readouts, function (readout) {
            var gd = plotOf(readout), area = gd && gd.querySelector(".nsewdrag");
            var src = source(gd);
            if (!area || !src || !gd._fullLayout) { return; }
            var r = area.getBoundingClientRect();
            var inside = ev.clientX >= r.left && ev.clientX <= r.right &&
                ev.clientY >= r.top && ev.clientY <= r.bottom;
            var fl = gd._fullLayout;
            var x = inside ? Math.floor(fl.xaxis.p2d(ev.clientX - r.left)) : -1;
            var y = inside ? Math.floor(fl.yaxis.p2d(ev.clientY - r.top)) : -1;
            if (x < 0 || y < 0 || x >= src.width || y >= src.height) {
                pending = null;
                show(readout, "");
                return;
            }
            ask({readout: readout, url: "/api/images/" + src.id + "/pixel.json?z=" + src.z +
                 "&y=" + y + "&x=" + x});
        });
    }, {passive: true});

    /* Nearest neighbour once an image pixel covers more than one screen pixel (napari and
     * Fiji show pixels as squares when zoomed in); smooth when zoomed out, where nearest
     * neighbour would alias. */
    function updateSmoothing(gd) {
        var src = source(gd), fl = gd._fullLayout;
        if (!src || !fl || !fl.xaxis || !fl.xaxis.range) { return; }
        var factor = Math.max(1, Math.ceil(Math.max(src.width, src.height) / (src.size || 1)));
        var span = Math.abs(fl.xaxis.range[1] - fl.xaxis.range[0]) || 1;
        var screenPerPixel = fl.xaxis._length / span * factor;
        gd.classList.toggle("pixelated", screenPerPixel > 1.5);
    }

    function hook() {
        var readouts = document.querySelectorAll(".pixel-readout[data-graph]");
        Array.prototype.forEach.call(readouts, function (readout) {
            var gd = plotOf(readout);
            if (!gd || typeof gd.on !== "function") { return; }
            if (!gd.__cellloopDisplay) {
                gd.__cellloopDisplay = true;
                gd.on("plotly_afterplot", function () { updateSmoothing(gd); });
                gd.on("plotly_relayout", function () { updateSmoothing(gd); });
            }
            updateSmoothing(gd);
        });
    }

    window.setInterval(hook, 500);
}());
