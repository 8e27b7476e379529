"""The routing plugin: the nginx sidecar (plugin), its configuration (render), its proxy checks and connections."""
