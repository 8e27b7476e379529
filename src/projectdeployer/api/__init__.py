"""The public Python API: the fluent :class:`~.project.ProjectDeployer` and the bastion client (the seed's ``Deployer``)."""
