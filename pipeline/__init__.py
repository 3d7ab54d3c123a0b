"""DVC stage entry points and the programmatic pipeline runner (training side only)."""
