"""One environment's shared state below the deploy path: its locks (this machine's and the servers') and its release history."""
