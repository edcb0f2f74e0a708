"""What the workbench knows, as data (no widgets, no figures): the History of frames and the step
observer that fills it (frames.py), the timeline's states, the Selection, breakpoints, the token
text source and the grid's cells for big caches."""
