"""The one deploy path: the plan, the per-server steps (:mod:`.server`), the orchestrator over N servers
(this machine is a fleet of one), allocation, image distribution, jobs and the scheduler, and the
public :class:`~.deployment.Deployment` (the deploy work on an environment)."""
