"""Universe scans that turn bars into signal events."""
