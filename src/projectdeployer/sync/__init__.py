"""Files between this machine and the servers: push config and secrets, pull data, logs and backups."""
