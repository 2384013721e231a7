"""The workbench's screens, one per mode (compose, jobs, series, gallery) and the modals."""
