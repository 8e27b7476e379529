"""The plugins that come with ProjectDeployer and are not one service type or provider."""
