"""Province extension plugins, one folder each, loaded only when named in the settings."""
