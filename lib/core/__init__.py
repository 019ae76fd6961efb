"""What the three topics share: paths, typed settings, profiles, run records, atomic I/O,
checkpoint state, learning-rate schedules, seeding and the device (no topic code here)."""
