"""The service layer: persistence, presence and emits."""
