"""The run directory: its layout and record (config.json, summary.json), the lock that
keeps one trainer per directory, and the errors a run reports."""
