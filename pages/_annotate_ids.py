"""Component ids of the annotation workspace, shared by its page module and its helpers
(prefixed "annotate-"; browser tests and the journey suite rely on them)."""

INFO, STATE, GRAPH, CLICK = "annotate-info", "annotate-state", "annotate-graph", "annotate-click"
SHAPE_EVENT, POLYGON_DONE = "annotate-shape-event", "annotate-polygon-done"
TOOL, CLS, BRUSH, OPACITY = "annotate-tool", "annotate-class", "annotate-brush", "annotate-opacity"
MESSAGE, COUNTS, LOCATION, VISITED = ("annotate-message", "annotate-counts", "annotate-location",
                                      "annotate-visited")
LEASE_TIMER, LEASE = "annotate-lease-timer", "annotate-lease"
STATUS, VERSION = "annotate-status", "annotate-version"       # header: image status, version
RECLASS = "annotate-reclass"             # {"cls", "t"}: set the selected cell's class
SUGGEST_GO = "annotate-suggest-go"       # {"t"}: run the model suggestion now
SUGGEST_MODAL, SUGGEST_TEXT = "annotate-suggest-modal", "annotate-suggest-text"
SUGGEST_PROGRESS = "annotate-suggest-progress"
B = {name: f"annotate-{name}" for name in (
    "undo", "redo", "delete", "deselect", "clear", "suggest", "whole", "save", "save-next",
    "empty", "force", "reload", "exclude", "note", "accept", "send-back", "comment", "next",
    "skip", "prev", "brush-down", "brush-up", "close-polygon", "cancel-suggest", "set-class",
    "revert", "suggest-confirm", "suggest-keep", "next-uncertain", "keep-cell",
    "keep-confident")}
REVIEW = "annotate-review"          # suggested cells by uncertainty: legend, counts, actions
SCORE_GO = "annotate-score-go"      # {"image": id}: score the suggestion's cells (once)
SCORED = "annotate-scored"          # {"rev"}: the draft's revision once they are scored
IDS = {"tool": TOOL, "cls": CLS}
Z = "annotate-z"
CHANNEL_IDS = {kind: f"annotate-channel-{kind}" for kind in (   # pages._display.KINDS
    "visible", "colour", "range", "low", "high", "hist", "meta")}
AUTO, READOUT = "annotate-auto", "annotate-pixel"      # auto contrast; values under the cursor
BRUSH_BOX = "annotate-brush-box"                         # brush width: label, − / +, slider
DISPLAY_SAVED = "annotate-display-saved"                 # "Display settings remembered ..."
# The browser's edit queue (assets/annotate_edits.js): edits show on screen at once and go to
# the server one at a time, in order; each server answer comes back as an EDIT_ACK.
EDIT_SEND = "annotate-edit-send"     # {"kind": delete|clear|whole|undo|redo, "label", "seq"}
EDIT_ACK = "annotate-edit-ack"       # {"seq", "ok", "state"}: the server's answer to one edit
PENDING = "annotate-pending"         # what the screen shows ahead of the server (previews)
PICKED = "annotate-picked"           # the selection (or points) a click on the image found
RECLASS_ASK = "annotate-reclass-ask"  # {"cls", "t"}: Set class / Shift+digit, into the queue
