"""Facts about SD1.5 / SDXL checkpoints that every feature shares: the architecture names, the
single-file key prefixes, and telling the architecture from key names. Imports no feature package
(merge, training, prompting, nodes) and no torch."""
