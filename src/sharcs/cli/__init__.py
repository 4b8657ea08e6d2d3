"""The command line: `sharcs train | evaluate | predict | bench | curve` (main), its parser built from the
declared options (parser), and the checks that answer bad input before torch is imported (checks)."""
