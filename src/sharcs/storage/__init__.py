"""What is written to disk: atomic saves (files), the lock on an output folder (lock), the layout of a run
folder (run_folder) and loading a finished run (saved_run)."""
