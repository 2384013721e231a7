"""The workbench's own widgets (each reusable one keeps its layout in DEFAULT_CSS)."""
