"""The hooked transformer: config, components, weight processing and loading."""
