"""Standard-library scripts copied into containers and run there on the image's python3 (the
scheduler, the OpenSearch snapshot client): not plugins, and they import nothing of the package."""
