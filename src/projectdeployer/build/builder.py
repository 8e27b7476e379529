"""Building the images of a project: sources, Dockerfiles, tags, and the calls to the builder.

For each buildable service (in startup order) the pipeline:

1. finds the source: a git checkout at the service's ref (:mod:`.git`, the token resolved
   through the ``resolve_secret`` hook) or ``build_context`` (relative paths are relative to
   the project file);
2. picks the Dockerfile: ``dockerfile_content``, else the user's ``dockerfile``, else the one the
   service type generates (``generate_dockerfile`` hook, which may look at the source, e.g. for
   a lock file), else a ``Dockerfile`` in the source; its ``FROM`` lines go through the
   project's ``[images]`` (:mod:`.fromlines`): a user's ``FROM python:3.11`` builds from the
   project's python repository, said in the build log;
3. hands a :class:`BuildRequest` to the ``build_image`` hook (the Docker SDK builder answers),
   whose answer is the image id; with ``push=True`` the ``push_image`` hook returns the digest.

Nothing here talks to Docker itself: the builder plugin does (``default_plugins/docker_builder.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
import pluggy

from ..core import paths
from ..core.build import BuildFailed, BuildRequest, GeneratedBuild, Log
from ..core.errors import ProjectDeployerError
from ..core.model import BuildSpec, GenericSpec, Project, ServiceSpec
from ..core.registry import Registry
from ..project.gitref import parse_git_repo
from .fromlines import official_redirects, redirect_from_lines
from .git import GitManager

#: Where a generated Dockerfile is placed inside the build context sent to the builder.
GENERATED_DOCKERFILE = ".projectdeployer/Dockerfile"


@attrs.frozen(kw_only=True)
class ChosenDockerfile:
    """The Dockerfile a build uses: its path in the context, files to add, and why (log lines)."""

    path: str
    extra: dict[str, str] = attrs.field(factory=dict)
    #: How it was chosen: which file the dependencies come from, FROM lines redirected, ...
    notes: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class BuiltImage:
    """The result of building one service."""

    service: str
    tag: str
    image_id: str
    #: ``repo@sha256:...`` after a push, else ``None``.
    digest: str | None
    #: The git commit built, for services built from a repository.
    commit: str | None
    seconds: float
    #: Whether the image was reused because nothing that goes into it changed.
    cached: bool


@attrs.frozen(kw_only=True)
class BuildCheck:
    """What a build of one service would do, found without building (what ``plan`` shows)."""

    service: str
    #: Whether the deploy builds a new image (its inputs changed, or there is no image yet).
    needed: bool
    #: Why, naming the input hash: ``inputs 1a2b3c4d5e6f -> 7a8b9c0d1e2f``, ``no image yet
    #: (inputs ...)``, ``git ref main not checked out yet``; ``""`` when not needed.
    reason: str = ""
    #: The input hash the build would label the image with (``None``: not known offline).
    inputs: str | None = None
    #: The input hash of the image built for the service now (``None``: none, or unlabelled).
    previous: str | None = None
    #: Why the build would fail (no build context, no Dockerfile, ...): the plan says ``error``.
    error: str | None = None


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "(none)"


def image_tag(project: Project, service: str) -> str:
    """``{registry or docker_hub_user}/{project}-{service}:{version}``; no prefix when neither is set."""
    prefix = project.settings.registry or project.settings.docker_hub_user
    repo = f"{project.name}-{service}"
    return f"{prefix}/{repo}:{project.settings.version}" if prefix else f"{repo}:{project.settings.version}"


def is_buildable(spec: ServiceSpec) -> bool:
    """Whether the service's image is built (not pulled as it is)."""
    return isinstance(spec, BuildSpec) and not (isinstance(spec, GenericSpec) and spec.image is not None)


class ProjectBuilder:
    """Builds the images of one project/environment through the plugin hooks of ``manager``;
    ``registry`` (``manager``'s) gives the base images' defaults that FROM lines are matched to."""

    def __init__(self, project: Project, env: str, manager: pluggy.PluginManager, *, registry: Registry, log: Log = print) -> None:
        self.project = project
        self.env = env
        self.manager = manager
        self.registry = registry
        self.log = log

    def build(self, *, services: Iterable[str] | None = None, push: bool = False) -> dict[str, BuiltImage]:
        """Build the named services (default: every buildable one); returns what was built."""
        specs = self.project.services_for(self.env)
        names = list(services) if services is not None else [n for n, s in specs.items() if is_buildable(s)]
        for name in names:
            if name not in specs:
                raise BuildFailed(f"no service named '{name}' (services: {', '.join(specs)})")
            if not is_buildable(specs[name]):
                raise BuildFailed(f"service '{name}' uses a ready image and has nothing to build")
        if push and not (self.project.settings.registry or self.project.settings.docker_hub_user):
            raise BuildFailed("push needs [project] registry or docker_hub_user to know where to push")
        results: dict[str, BuiltImage] = {}
        for index, name in enumerate(names, 1):
            self.log(f"[{index}/{len(names)}] building {name}")
            results[name] = self._build_one(specs[name], push=push)
        return results

    def check(self, name: str) -> BuildCheck:
        """What building ``name`` would do, without building, cloning or fetching: its input hash
        (the builder's ``image_inputs`` hook) against the one of the image built for it now.

        A git-sourced service is hashed as its checkout stands (plan does not fetch): a checkout
        that is missing, or not at the commit the ref names, means a build whose inputs are not
        known yet. Reads only; writes nothing.
        """
        spec = self.project.services_for(self.env)[name]
        assert isinstance(spec, BuildSpec)
        try:
            context_dir = self._existing_source(spec)
            if context_dir is None:
                assert spec.git_repo is not None  # only a git checkout can be missing
                repo = parse_git_repo(spec.git_repo) if isinstance(spec.git_repo, str) else spec.git_repo
                return BuildCheck(service=name, needed=True, reason=f"git ref {repo.ref or '(default branch)'} not checked out yet")
            chosen = self._dockerfile(spec, context_dir)
        except ProjectDeployerError as exc:
            return BuildCheck(service=name, needed=True, error=str(exc))
        request = self._request(spec, context_dir, chosen)
        try:
            answer = self.manager.hook.image_inputs(request=request)
        except ProjectDeployerError as exc:  # e.g. no engine to read the base images from
            return BuildCheck(service=name, needed=True, error=str(exc))
        if answer is None:
            return BuildCheck(service=name, needed=True, reason="no builder plugin answered image_inputs: inputs not known")
        inputs, previous = answer
        if previous == inputs:
            return BuildCheck(service=name, needed=False, inputs=inputs, previous=previous)
        reason = f"no image yet (inputs {_short(inputs)})" if previous is None else f"inputs {_short(previous)} -> {_short(inputs)}"
        reason = "; ".join([reason, *chosen.notes])  # which files the build would use, as its log says
        return BuildCheck(service=name, needed=True, reason=reason, inputs=inputs, previous=previous)

    def _existing_source(self, spec: BuildSpec) -> Path | None:
        """The source directory as it is now, touching nothing: ``build_context``, or the git
        checkout when it is there at the ref (``None``: the build must clone or check out first)."""
        if spec.git_repo is None:
            return self._source(spec)[0]
        repo = parse_git_repo(spec.git_repo) if isinstance(spec.git_repo, str) else spec.git_repo
        path = paths.git_checkout_dir(self.project.name, self.env, spec.name)
        head = path / ".git" / "HEAD"
        if not head.is_file():
            return None
        if repo.is_commit and not head.read_text().strip().startswith(repo.ref or ""):
            return None  # the deploy checks out another commit: not known without it
        return path

    def _build_one(self, spec: ServiceSpec, *, push: bool) -> BuiltImage:
        assert isinstance(spec, BuildSpec)
        started = time.monotonic()
        context_dir, commit = self._source(spec)
        chosen = self._dockerfile(spec, context_dir)
        for note in chosen.notes:
            self.log(f"{spec.name}: {note}")
        tag = image_tag(self.project, spec.name)
        labels = {
            "io.projectdeployer.project": self.project.name,
            "io.projectdeployer.service": spec.name,
        }
        if commit:
            labels["io.projectdeployer.commit"] = commit
        request = self._request(spec, context_dir, chosen, labels=labels)
        result = self.manager.hook.build_image(request=request)
        if result is None:
            raise BuildFailed("no builder plugin answered build_image (is the docker_builder plugin loaded?)")
        image_id, cached = result
        digest = None
        if push:
            digest = self.manager.hook.push_image(tag=tag, log=self.log)
            if digest is None:
                raise BuildFailed(f"{spec.name}: no plugin answered push_image")
        seconds = time.monotonic() - started
        self.log(f"{spec.name}: {'unchanged, reused' if cached else 'built'} {tag} ({image_id[:19]}) in {seconds:.1f}s")
        return BuiltImage(service=spec.name, tag=tag, image_id=image_id, digest=digest, commit=commit, seconds=seconds, cached=cached)

    def _source(self, spec: BuildSpec) -> tuple[Path, str | None]:
        if spec.git_repo is not None:
            token = None
            if spec.git_token is not None:
                token = self.manager.hook.resolve_secret(project=self.project.name, env=None, ref=spec.git_token)
            checkout = GitManager(self.project.name, self.env, log=self.log).checkout(spec.name, spec.git_repo, token=token)
            return checkout.path, checkout.commit
        if spec.build_context is not None:
            context = Path(spec.build_context).expanduser()
            if not context.is_absolute() and self.project.source:
                context = Path(self.project.source).resolve().parent / context
            if not context.is_dir():
                raise BuildFailed(f"{spec.name}: build_context {context} is not a directory")
            return context, None
        raise BuildFailed(f"{spec.name}: nothing to build from: set build_context or git_repo")

    def _request(self, spec: BuildSpec, context_dir: Path, chosen: ChosenDockerfile, *, labels: Mapping[str, str] | None = None) -> BuildRequest:
        """The request a check hashes (``image_inputs``) and a build builds (``build_image``):
        one construction, so what the plan compares is what the build uses."""
        return BuildRequest(
            project=self.project.name,
            service=spec,
            context_dir=context_dir,
            dockerfile=chosen.path,
            extra_files=chosen.extra,
            tag=image_tag(self.project, spec.name),
            build_args=dict(spec.build_args),
            labels=dict(labels or {}),
            log=self.log,
        )

    def _dockerfile(self, spec: BuildSpec, context_dir: Path) -> ChosenDockerfile:
        chosen = self._pick_dockerfile(spec, context_dir)
        return self._redirect_bases(chosen, context_dir)

    def _pick_dockerfile(self, spec: BuildSpec, context_dir: Path) -> ChosenDockerfile:
        if spec.dockerfile is not None and spec.dockerfile_content is None:
            if not (context_dir / spec.dockerfile).is_file():
                raise BuildFailed(f"{spec.name}: dockerfile '{spec.dockerfile}' not found in {context_dir}")
            return ChosenDockerfile(path=spec.dockerfile)
        generated: GeneratedBuild | None = self.manager.hook.generate_dockerfile(service=spec, project=self.project, context_dir=context_dir)
        if generated is not None:
            return ChosenDockerfile(path=GENERATED_DOCKERFILE, extra={GENERATED_DOCKERFILE: generated.dockerfile, **generated.files}, notes=tuple(generated.notes))
        if (context_dir / "Dockerfile").is_file():
            return ChosenDockerfile(path="Dockerfile")
        raise BuildFailed(f"{spec.name}: no Dockerfile: set dockerfile or dockerfile_content, or add a Dockerfile to {context_dir}")

    def _redirect_bases(self, chosen: ChosenDockerfile, context_dir: Path) -> ChosenDockerfile:
        """``chosen`` with its FROM lines sent through ``[images]`` (:mod:`.fromlines`); a user's
        Dockerfile that changes is handed to the builder as a generated file, untouched on disk."""
        redirects = official_redirects(self.project.images, self.registry.default_images)
        if not redirects:
            return chosen
        text = chosen.extra.get(chosen.path)
        if text is None:
            try:
                text = (context_dir / chosen.path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise BuildFailed(f"cannot read the Dockerfile {context_dir / chosen.path}: {exc}") from None
        result = redirect_from_lines(text, redirects)
        notes = (*chosen.notes, *result.changes, *result.left)
        if not result.changes:
            return attrs.evolve(chosen, notes=notes)
        return ChosenDockerfile(path=GENERATED_DOCKERFILE, extra={**chosen.extra, GENERATED_DOCKERFILE: result.text}, notes=notes)
