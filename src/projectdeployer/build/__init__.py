"""Image builds: a project's sources (build context or git checkout), the Dockerfiles they use, and the
calls to the builder plugin (:mod:`.builder`); git checkouts (:mod:`.git`); ``FROM`` lines sent
through the project's ``[images]`` (:mod:`.fromlines`)."""
