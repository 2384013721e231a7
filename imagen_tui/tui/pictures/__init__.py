"""Pictures in the TUI, all in this package.

- `protocol`: how pictures are drawn (the `tui.image_protocol` setting, the
  names from `imagen_tui.limits.IMAGE_PROTOCOLS`): picks textual-image's
  widgets or `CellPicture`, and the box a picture fits in;
- `decode`: Pillow decoding and scaling (blocking: call from thread workers);
- `cells`: drawing a picture with text cells (`halfcell`, `unicode`);
- `widget`: `CellPicture`, the widget that shows such a drawing.

Importing `protocol` runs textual-image's terminal detection; the other
modules are light.
"""
