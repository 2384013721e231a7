"""The shared core: request spec, workbench, the generate pipeline and its parts."""
