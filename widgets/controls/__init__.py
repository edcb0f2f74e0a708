"""The workbench's controls: the toolbar (buttons, form, slider), its fields and status line, the
replay form, and the wiring that turns clicks into calls of the Workbench's public API."""
