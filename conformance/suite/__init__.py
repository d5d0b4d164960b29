"""The suite's test modules, one per contract area (collected by the plugin's run)."""
