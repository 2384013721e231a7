"""The Textual workbench (`imagen-tui`). Filled in by the TUI issue."""
