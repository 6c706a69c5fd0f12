"""Dataset nodes: tag, format, score and inspect a training folder (the core is datasets/)."""
