"""Pure array work of the server that is not storage: plotly shapes <-> label masks
(`shapes`, annotation editing) and display rendering (`render`, `display_stats`). Nothing
here touches the database, the blob store, torch or Flask."""
