"""Generated secrets after the deploy: rotation of the databases' passwords."""
