"""The job worker and the types it shares with any queue implementation."""
